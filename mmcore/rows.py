"""Raw rows -> one collated batch of every modality, without the data layer.

This is what serving needs (:mod:`mmcore.runtime`): the value of each modality in a row
(one cell, or a list of cells for a multi-column modality), "missing" as the modality
defines it, ``preprocess`` (or ``preprocess_row`` with context columns), a check of what
the plugin returned, then ``collate``. The data layer's
:class:`~mmcore.data.preprocess.RowProcessor` uses the same helpers for whole splits and
records bad rows instead of raising; the messages are the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mmcore.errors import DataError

if TYPE_CHECKING:
    from mmcore.batch import ModalityBatch
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


def collate_rows(
    modalities: Mapping[str, Modality],
    rows: Sequence[Mapping[str, Any]],
    *,
    allow_missing: bool,
    first_row: int = 0,
) -> dict[str, ModalityBatch]:
    """Raw rows (column -> value; a column left out counts as missing) -> each modality's
    collated batch. Raises :class:`DataError` at the first bad row, naming its index and
    column: a value ``preprocess`` rejects, a missing modality unless ``allow_missing``, or a
    row with no modality at all. Rows are numbered from ``first_row`` in messages (a chunk
    of a longer request)."""
    if not rows:
        raise DataError("no rows given")
    columns, table = _columns_table(modalities, rows)
    arrays: dict[str, list[np.ndarray | None]] = {name: [None] * len(rows) for name in modalities}
    for i in range(len(rows)):
        missing = []  # a bad value outranks a missing one, as in the data layer's report
        for name, modality in modalities.items():
            label = ",".join(columns[name])
            value = modality_value(table, columns[name], i)
            if value_is_missing(modality, value, columns[name]):
                missing.append(label)
                continue
            context = modality.context_columns()
            try:
                arr = (modality.preprocess_row(value, row_context(table, context, i)) if context
                       else modality.preprocess(value))
            except ValueError as exc:
                raise input_row_error(first_row + i, label,
                                      str(exc) or type(exc).__name__) from None
            arrays[name][i] = check_array(arr, modality, name)
        if len(missing) == len(modalities):
            label = ",".join(c for name in modalities for c in columns[name])
            raise input_row_error(first_row + i, label, ALL_MISSING_REASON)
        if missing and not allow_missing:
            raise input_row_error(first_row + i, missing[0], MISSING_REASON)
    # imported here: importing this module must not import torch (`mmcore serve --help`,
    # `mmcore validate` load it through the CLI's parser)
    from mmcore.collate import collate_batch

    return collate_batch(modalities, arrays).inputs
