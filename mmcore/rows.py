"""Raw rows -> one collated batch of every modality, without the data layer.

:func:`collate_rows` is the one path from given rows to a model's inputs: the value of each
modality in a row (one cell, or a list of cells for a multi-column modality), "missing" as
the modality defines it, ``preprocess`` (or ``preprocess_row`` with context columns), a
check of what the plugin returned, then ``collate``.
:meth:`mmcore.inference.predictor.Predictor.predict` and the bundle runtime
(:mod:`mmcore.inference.runtime`) take it through :func:`for_rows` and :func:`row_batches`. The
data layer's :class:`~mmcore.data.preprocess.RowProcessor` runs whole splits through the same
:func:`preprocess_rows` and records bad rows instead of raising; the messages are the same.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np

from mmcore.errors import DataError

if TYPE_CHECKING:
    from mmcore.batch import Batch
    from mmcore.modality import Modality

#: the reason given for a modality value that is missing while ``data.allow_missing`` is False
MISSING_REASON = "missing value; set data.allow_missing=True to allow rows without this modality"
ALL_MISSING_REASON = "every modality is missing; a row needs at least one"


def modality_value(batch: Mapping[str, Sequence[Any]], columns: Sequence[str], i: int) -> Any:
    """The raw value of one row: the cell, or a list of cells for a multi-column modality."""
    if len(columns) == 1:
        return batch[columns[0]][i]
    return [batch[c][i] for c in columns]


def row_context(
    batch: Mapping[str, Sequence[Any]], columns: Sequence[str], i: int
) -> dict[str, Any]:
    """A row's values of a modality's context columns (``None`` where the batch lacks one)."""
    return {c: batch[c][i] if c in batch else None for c in columns}


def value_is_missing(modality: Modality, value: Any, columns: Sequence[str]) -> bool:
    """Whether a row lacks the modality: its value (every part of a multi-column one) is
    missing as :meth:`Modality.is_missing` defines it."""
    if len(columns) > 1:
        return all(modality.is_missing(part) for part in value)
    return modality.is_missing(value)


def adapt_to_rows(
    modalities: Mapping[str, Modality],
    columns: Mapping[str, Sequence[str]],
    table: Mapping[str, Sequence[Any]],
) -> None:
    """:meth:`Modality.adapt` of every modality that :meth:`~Modality.adapts`, on the present
    values of ``table`` (column -> values of the rows about to be preprocessed together)."""
    for name, modality in modalities.items():
        if not modality.adapts():
            continue
        cols, context = columns[name], modality.context_columns()
        n = len(table[cols[0]]) if cols[0] in table else 0
        present = [i for i in range(n)
                   if not value_is_missing(modality, modality_value(table, cols, i), cols)]
        modality.adapt([modality_value(table, cols, i) for i in present],
                       [row_context(table, context, i) for i in present])


def adapt_to_given_rows(
    modalities: Mapping[str, Modality], rows: Sequence[Mapping[str, Any]]
) -> None:
    """:func:`adapt_to_rows` on raw rows (column -> value; a column left out is missing)."""
    if any(m.adapts() for m in modalities.values()):
        adapt_to_rows(modalities, *_columns_table(modalities, rows))


def _columns_table(
    modalities: Mapping[str, Modality], rows: Sequence[Mapping[str, Any]]
) -> tuple[dict[str, list[str]], dict[str, list[Any]]]:
    """Each modality's columns, and column -> the rows' values of every column read."""
    columns = {name: m.columns or [name] for name, m in modalities.items()}
    table: dict[str, list[Any]] = {}
    for name, modality in modalities.items():
        for c in [*columns[name], *modality.context_columns()]:
            table.setdefault(c, [row.get(c) for row in rows])
    return columns, table


def check_array(arr: Any, modality: Modality, name: str) -> np.ndarray:
    """``arr`` if it is a numeric numpy array; else a ``TypeError`` naming the plugin (a
    plugin bug, not bad input)."""
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
        what = arr.dtype if isinstance(arr, np.ndarray) else type(arr).__name__
        raise TypeError(
            f"modality {name!r} ({type(modality).__name__}).preprocess returned {what}; "
            "expected a numeric numpy array (float32 or int64)"
        )
    return arr


def input_row_error(row: int, column: str, reason: str) -> DataError:
    """The error for a bad value in given rows, worded as prediction words it."""
    return DataError(f"bad data in split 'input', row {row}, column {column!r}: {reason}")


class TargetEncoder(Protocol):
    """What :func:`collate_rows` needs of a head whose targets it encodes (the data layer's
    ``TargetSpec``)."""

    name: str
    column: str

    def encode(self, values: Sequence[Any],
               errors: list[tuple[str, str] | None]) -> list[np.ndarray | None]: ...


def preprocess_rows(
    modalities: Mapping[str, Modality],
    columns: Mapping[str, Sequence[str]],
    table: Mapping[str, Sequence[Any]],
    rows: Sequence[int],
    split: str,
) -> tuple[dict[str, list[np.ndarray | None]], list[tuple[str, str] | None]]:
    """Every row of ``table`` (column -> values) through every modality: name -> one array
    per row (``None`` where the row lacks the modality or is bad), and each row's error,
    ``(column, reason)`` or ``None``: the first value ``preprocess`` rejects, or
    :data:`ALL_MISSING_REASON`. ``rows`` are the rows' numbers in ``split``, for the note a
    plugin's exception other than ``ValueError`` (a plugin bug) gets."""
    n = len(rows)
    errors: list[tuple[str, str] | None] = [None] * n
    inputs: dict[str, list[np.ndarray | None]] = {}
    for name, modality in modalities.items():
        cols, label, context = columns[name], ",".join(columns[name]), modality.context_columns()
        out: list[np.ndarray | None] = [None] * n
        for i in range(n):
            if errors[i] is not None:
                continue
            value = modality_value(table, cols, i)
            if value_is_missing(modality, value, cols):
                continue
            try:
                arr = (modality.preprocess_row(value, row_context(table, context, i)) if context
                       else modality.preprocess(value))
            except ValueError as exc:
                errors[i] = (label, str(exc) or type(exc).__name__)
                continue
            except Exception as exc:
                if sys.version_info >= (3, 11):  # Python 3.10 has no notes: raised as it is
                    exc.add_note(
                        f"(raised by modality {name!r} ({type(modality).__name__}) "
                        f"preprocessing split {split!r}, row {rows[i]}, column {label!r}; "
                        "plugins must raise ValueError for bad input)"
                    )
                raise
            out[i] = check_array(arr, modality, name)
        inputs[name] = out
    for i in range(n):
        if errors[i] is None and all(inputs[m][i] is None for m in inputs):
            errors[i] = (",".join(c for m in modalities for c in columns[m]), ALL_MISSING_REASON)
    return inputs, errors


def with_missing(
    inputs: Mapping[str, Sequence[np.ndarray | None]],
    errors: Sequence[tuple[str, str] | None],
    columns: Mapping[str, Sequence[str]],
    allow_missing: bool,
) -> list[tuple[str, str] | None]:
    """``errors`` (:func:`preprocess_rows`) plus, unless ``allow_missing``, each row that
    lacks a modality: its first such modality's columns and :data:`MISSING_REASON` (a bad
    value outranks a missing one)."""
    out = list(errors)
    for i, error in enumerate(out):
        if error is None and not allow_missing:
            lacking = next((m for m in inputs if inputs[m][i] is None), None)
            out[i] = None if lacking is None else (",".join(columns[lacking]), MISSING_REASON)
    return out


def collate_rows(
    modalities: Mapping[str, Modality],
    rows: Sequence[Mapping[str, Any]],
    *,
    allow_missing: bool,
    first_row: int = 0,
    targets: Sequence[TargetEncoder] = (),
) -> Batch:
    """Raw rows (column -> value; a column left out counts as missing) -> one collated
    :class:`~mmcore.batch.Batch`, with the rows' numbers as its index and the encoded
    ``targets`` (none by default: prediction). The one path from given rows to a model's
    inputs: :class:`~mmcore.inference.predictor.Predictor`, the bundle runtime and
    ``DataModule.batch_from_rows`` all take it.

    Raises :class:`DataError` at the first bad row, naming its index and column: a value
    ``preprocess`` rejects, a bad target, a missing modality unless ``allow_missing``, or a
    row with no modality at all. Rows are numbered from ``first_row`` (a chunk of a longer
    request). Relative paths resolve against each modality's ``root``."""
    if not rows:
        raise DataError("no rows given")
    columns, table = _columns_table(modalities, rows)
    numbers = range(first_row, first_row + len(rows))
    inputs, errors = preprocess_rows(modalities, columns, table, numbers, "input")
    encoded = {t.name: t.encode([row.get(t.column) for row in rows], errors) for t in targets}
    for i, error in enumerate(with_missing(inputs, errors, columns, allow_missing)):
        if error is not None:
            raise input_row_error(first_row + i, *error)
    # imported here: importing this module must not import torch (`mmcore serve --help`,
    # `mmcore validate` load it through the CLI's parser)
    from mmcore.collate import collate_batch

    return collate_batch(modalities, inputs, cast("dict[str, list[np.ndarray]]", encoded),
                         numbers)


def for_rows(modalities: Mapping[str, Modality], rows: Sequence[Mapping[str, Any]],
             root: str | Path | None) -> dict[str, Modality]:
    """The modalities that preprocess ``rows``: resolving relative file paths against
    ``root`` (copies, :meth:`~mmcore.modality.Modality.with_root`, so the given ones keep
    their root; themselves when ``root`` is ``None``), adapted to every row
    (:func:`adapt_to_given_rows`)."""
    out = dict(modalities) if root is None else {
        name: m.with_root(root) for name, m in modalities.items()}
    adapt_to_given_rows(out, rows)
    return out


def row_batches(modalities: Mapping[str, Modality], rows: Sequence[Mapping[str, Any]], *,
                allow_missing: bool, batch_size: int, first_row: int = 0) -> Iterator[Batch]:
    """``rows`` through :func:`collate_rows`, ``batch_size`` at a time, numbered from
    ``first_row`` in error messages."""
    for start in range(0, len(rows), batch_size):
        yield collate_rows(modalities, rows[start:start + batch_size],
                           allow_missing=allow_missing, first_row=first_row + start)
