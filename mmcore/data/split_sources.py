"""The spec's data as named splits of raw rows: which sources are read, which split each row
goes to, and the checks made before any other work: every column the spec names is there,
and each modality's own check of its options (:meth:`~mmcore.modality.Modality.check`).

Three ways to give the data (``data.dataset``, ``data.path``, or one file per split) give
either splits already (a ``DatasetDict``, a folder of split files, ``data.train`` etc.) or one
table, which ``data.split_column`` or a seeded split (:mod:`mmcore.data.splits`) divides;
streamed data is divided lazily (:func:`mmcore.data.streaming.split_stream`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmcore.data import sources as src
from mmcore.data.splits import (
    empty_split_reason,
    group_ids,
    grouped_split,
    read_column,
    rows_by_split_column,
    seeded_split,
)
from mmcore.errors import DataError, PluginError
from mmcore.modality import Modality, rooted
from mmcore.spec.model import HeadSpec, Spec
from mmcore.spec.roots import data_root


@dataclass
class SplitSource:
    """A split's raw rows and where they came from.

    Attributes:
        dataset: the rows (a ``datasets.Dataset``, an ``IterableDataset`` when streaming, or a
            :class:`~mmcore.data.tables.FileTable` when only the schema is read).
        file: where the rows came from, for messages (a path or ``"data.dataset"``).
        root: folder that relative file paths in the rows resolve against.
        source_rows: row in ``file`` of each split row, or ``None`` when they are the same.
    """

    dataset: Any
    file: str
    root: Path | None
    source_rows: np.ndarray | None = None


def required_columns(
    modalities: Mapping[str, Modality],
    columns: Mapping[str, list[str]],
    heads: Mapping[str, HeadSpec] | None = None,
) -> dict[str, list[str]]:
    """column -> the spec fields that name it: each modality's columns (``columns``) and
    context columns, and each head's target (``heads``, when given)."""
    needed: dict[str, list[str]] = {}
    for name, modality in modalities.items():
        for column in columns[name]:
            needed.setdefault(column, []).append(f"modalities.{name}.column")
        for column in modality.context_columns():
            needed.setdefault(column, []).append(f"modalities.{name}.options")
    for name, head in (heads or {}).items():
        needed.setdefault(head.target, []).append(f"heads.{name}.target")
    return needed


def check_columns(splits: Mapping[str, SplitSource], needed: Mapping[str, list[str]]) -> None:
    """One :class:`DataError` naming every column of ``needed`` (column -> the fields that
    name it) that a split lacks, with the columns it has."""
    problems = []
    for name, split in splits.items():
        existing = src.column_names(split.dataset)
        missing = [c for c in needed if c not in existing]
        if missing:
            where = f"{split.file}" + (f" (split {name!r})" if name else "")
            named = "; ".join(f"{c!r} ({', '.join(needed[c])})" for c in missing)
            problems.append(
                f"{where} has no column {named}. Its columns are: {', '.join(existing)}"
            )
    if problems:
        raise DataError("missing column(s):\n  " + "\n  ".join(problems))


def check_modalities(modalities: Mapping[str, Modality], root: Path | None) -> None:
    """Each modality's own :meth:`~mmcore.modality.Modality.check` (e.g. that a folder an
    option names exists), relative paths resolved against ``root``; one :class:`DataError`
    listing every failure."""
    failed = []
    with rooted(modalities, root):
        for name, modality in modalities.items():
            try:
                modality.check()
            except (DataError, PluginError) as exc:
                failed.append(f"modalities.{name}.options: {exc}")
    if failed:
        raise DataError("\n".join(failed))


def split_sizes(splits: Mapping[str, SplitSource]) -> dict[str, int | None]:
    """Split name -> its rows (``None`` for a stream: counting means reading it all)."""
    sizes: dict[str, int | None] = {}
    for name, split in splits.items():
        try:
            sizes[name] = len(split.dataset)
        except TypeError:  # an IterableDataset
            sizes[name] = None
    return sizes


def load_splits(
    spec: Spec,
    needed: Mapping[str, list[str]],
    stratify_by: str | None,
    schema_only: bool = False,
) -> tuple[dict[str, SplitSource], list[str]]:
    """The splits, in the order train, validation, test, others, and why a split is empty or
    missing although the data or the spec asks for it (an empty split file; a seeded or
    group split that could not give validation/test rows).

    Args:
        needed: column -> the spec fields that name it (:func:`required_columns`); every
            source is checked for them before it is split.
        stratify_by: the column a stratified seeded split goes by (``data.split.stratify``),
            or ``None`` when no head is categorical.
        schema_only: tables read a column at a time, as ``mmcore validate`` needs, where the
            format allows (see :func:`mmcore.data.sources.load_path`).
    """
    data = spec.data
    given, single = _given_splits(spec, schema_only)
    if single is not None:
        if data.split.group_column is not None and data.split_column is not None:
            raise DataError(
                f"data.split.group_column={data.split.group_column!r} groups the seeded "
                f"split, but data.split_column={data.split_column!r} already assigns the "
                "splits; remove one of them"
            )
        check_columns({"": single}, _with_split_columns(needed, spec))
        return _split_single(single, spec, stratify_by)
    for field, value in (("split_column", data.split_column),
                         ("split.group_column", data.split.group_column)):
        if value is not None:
            raise DataError(
                f"data.{field}={value!r} applies to a single table, but the data already "
                f"comes in splits ({', '.join(given)}); remove data.{field}"
            )
    check_columns(given, needed)
    warnings: list[str] = []
    if not data.streaming:  # an empty split is left out, as a seeded split's would be
        for name, split in list(given.items()):
            if len(split.dataset) == 0:
                warnings.append(f"the {name} split ({split.file}) has no rows; it is left out")
                del given[name]
    return _ordered(given), warnings


def file_split(spec: Spec, path: str | Path) -> SplitSource:
    """Every row of a data file or folder (its splits concatenated in name order), read in
    full whatever ``data.streaming`` says; relative paths in it resolve against its folder."""
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise DataError(f"data file {path} does not exist")
    loaded = src.load_path(path, "auto", src.cache_dir(spec), streaming=False)
    if isinstance(loaded, dict):
        datasets = src.datasets_module()
        loaded = datasets.concatenate_datasets([loaded[k] for k in sorted(loaded)])
    return SplitSource(loaded, str(path), data_root(None, path))


def _given_splits(
    spec: Spec, schema_only: bool
) -> tuple[dict[str, SplitSource], SplitSource | None]:
    """The splits the data comes in, or (``{}``, the one table) when it comes in one."""
    data = spec.data
    if data.dataset is not None:
        obj, root = data.dataset, data_root(spec)
        if not isinstance(obj, Mapping):
            return {}, SplitSource(_as_stream(obj, spec), "data.dataset", root)
        return {
            src.split_name(k): SplitSource(_as_stream(v, spec), f"data.dataset[{k!r}]", root)
            for k, v in obj.items()
        }, None
    if data.path is not None:
        path = src.resolve(spec, data.path, "data.path")
        loaded = _load(spec, path, schema_only)
        root = data_root(spec, path)
        if not isinstance(loaded, dict):
            return {}, SplitSource(loaded, str(path), root)
        return {
            src.split_name(k): SplitSource(v, f"{path} ({k})", root) for k, v in loaded.items()
        }, None
    return _split_files(spec, schema_only), None


def _split_files(spec: Spec, schema_only: bool) -> dict[str, SplitSource]:
    """``data.train``, ``data.validation``, ``data.test``: one split per file."""
    given = {}
    for name in src.SPLITS:
        value = getattr(spec.data, name)
        if value is None:
            continue
        path = src.resolve(spec, value, f"data.{name}")
        loaded = _load(spec, path, schema_only)
        if isinstance(loaded, dict):
            if len(loaded) != 1:
                raise DataError(
                    f"data.{name}: {path} holds several splits ({', '.join(loaded)}); "
                    "give one split per file, or give the folder as data.path"
                )
            loaded = next(iter(loaded.values()))
        given[name] = SplitSource(loaded, str(path), data_root(spec, path))
    return given


def _load(spec: Spec, path: Path, schema_only: bool) -> Any:
    return src.load_path(path, spec.data.format, src.cache_dir(spec), bool(spec.data.streaming),
                         schema_only)


def _as_stream(dataset: Any, spec: Spec) -> Any:
    """A ``data.dataset`` object as the mode reads it: streamed (``data.streaming``) or not."""
    dataset = src.undecoded(dataset)
    datasets = src.datasets_module()  # the data is a datasets object: imported already
    if spec.data.streaming and isinstance(dataset, datasets.Dataset):
        return dataset.to_iterable_dataset()
    if not spec.data.streaming and isinstance(dataset, datasets.IterableDataset):
        raise DataError(
            "data.dataset is a datasets.IterableDataset; set data.streaming=True to use it"
        )
    return dataset


def _with_split_columns(needed: Mapping[str, list[str]], spec: Spec) -> dict[str, list[str]]:
    """``needed`` and the columns that split one table (split column, group column)."""
    out = {column: list(fields) for column, fields in needed.items()}
    for column, field in ((spec.data.split_column, "data.split_column"),
                          (spec.data.split.group_column, "data.split.group_column")):
        if column is not None:
            out.setdefault(column, []).append(field)
    return out


def _split_single(
    single: SplitSource, spec: Spec, stratify_by: str | None
) -> tuple[dict[str, SplitSource], list[str]]:
    data = spec.data
    if data.streaming:
        from mmcore.data.streaming import split_stream

        return {
            name: SplitSource(ds, single.file, single.root)
            for name, ds in split_stream(single.dataset, data).items()
        }, []
    warnings: list[str] = []
    if data.split_column is not None:
        rows = rows_by_split_column(single.dataset, data.split_column, single.file)
    else:
        rows, warnings = _seeded_rows(single, spec, stratify_by)
    return {
        name: SplitSource(single.dataset.select(idx), single.file, single.root, idx)
        for name, idx in rows.items()
    }, warnings


def _seeded_rows(
    single: SplitSource, spec: Spec, stratify_by: str | None
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Split name -> the table's rows in it (``data.split``), and why validation or test got
    none."""
    split, n = spec.data.split, len(single.dataset)
    column = stratify_by if split.stratify else None
    labels = None if column is None else read_column(single.dataset, column).to_pylist()
    groups = None
    if split.group_column is not None:
        groups = group_ids(single.dataset, split.group_column, single.file)
        rows = grouped_split(groups, split.validation, split.test, split.seed, labels)
    else:
        rows = seeded_split(n, split.validation, split.test, split.seed, labels)
    warnings: list[str] = []
    for name in ("validation", "test"):
        reason = None if name in rows else empty_split_reason(
            name, getattr(split, name), n, labels, column, groups, split.group_column,
        )
        if reason is not None:
            warnings.append(f"no {name} split: {reason}")
    return rows, warnings


def _ordered(splits: Mapping[str, SplitSource]) -> dict[str, SplitSource]:
    first = [s for s in src.SPLITS if s in splits]
    return {name: splits[name] for name in first + [s for s in splits if s not in first]}
