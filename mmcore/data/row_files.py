"""Rows to predict on, read from a file: ``mmcore predict --input`` (``.csv``/``.tsv``,
``.jsonl``/``.ndjson``, ``.json``). CSV cells are typed by the training reader itself, so a row
is read for prediction exactly as the same row is read for training."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from mmcore.data.sources import load_path, progress_bars
from mmcore.errors import DataError


def read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every row of a ``.csv``/``.tsv``, ``.jsonl``/``.ndjson`` or ``.json`` file, each a dict
    of column -> value, in file order.

    CSV cells are typed by the training reader itself (:func:`load_path`): numbers become
    numbers, empty cells ``None``, so a row is read for prediction exactly as the same row is
    read for training. JSON values are kept as written; a ``.json`` file holds one object or
    a list of objects. Raises :class:`DataError` naming the file and, for bad JSON, the line
    or the row (numbered from 0, as prediction numbers rows).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: input file not found")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        # datasets writes the table it reads as Arrow; a folder of our own, removed afterwards,
        # keeps one-off prediction inputs out of the datasets cache (and a progress bar per
        # file read would be noise on a command's stderr)
        with tempfile.TemporaryDirectory(prefix="mmcore-rows-") as tmp, progress_bars(False):
            try:
                return load_path(path, "csv", Path(tmp), streaming=False).to_list()
            except DataError:
                if _header_only(path):  # no rows to predict on is no error (datasets says so)
                    return []
                raise
    if suffix in (".jsonl", ".ndjson"):
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}, line {number}: invalid JSON ({exc.msg})") from None
        return _objects(rows, path)
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: invalid JSON at line {exc.lineno} ({exc.msg})") from None
        if isinstance(data, dict):
            data = [data]
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a list of objects, got {type(data).__name__}")
        return _objects(data, path)
    raise DataError(f"{path}: unknown input format {suffix!r}; expected .csv, .tsv, .jsonl, "
                    ".ndjson or .json")


def _objects(rows: list[Any], path: Path) -> list[dict[str, Any]]:
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DataError(f"{path}, row {i}: expected an object, got {type(row).__name__}")
    return rows


def _header_only(path: Path) -> bool:
    """Whether a csv/tsv file holds a header line and no row."""
    import pandas as pd

    try:
        return pd.read_csv(path, sep="\t" if ".tsv" in path.name.lower() else ",", nrows=1).empty
    except (ValueError, OSError):  # pandas' EmptyDataError and ParserError are ValueErrors
        return False
