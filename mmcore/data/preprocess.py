"""Raw rows -> preprocessed arrays and encoded targets, with bad rows recorded per row.

:class:`RowProcessor` is the function given to ``datasets.Dataset.map``; the work on each
row is :func:`mmcore.rows.preprocess_rows`, which given rows take too
(:func:`mmcore.rows.collate_rows`: prediction, ``DataModule.batch_from_rows``), and a head's
targets are encoded by :meth:`TargetSpec.encode`. It records errors that do not depend on
the bad-row policy in the table (``_error``/``_error_column``), so a cached table serves
every policy; a missing modality is stored as null and judged against
``data.allow_missing`` after the map.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmcore.data.bad_rows import (
    MISSING_TARGET_REASON,
    BadRow,
    bad_row_message,
    unknown_class_reason,
)
from mmcore.data.storage import (
    ERROR,
    ERROR_COLUMN,
    FORMAT_VERSION,
    ROW,
    encode_arrays,
    modality_key,
    target_key,
)
from mmcore.errors import DataError
from mmcore.modality import Modality
from mmcore.rows import preprocess_rows, with_missing
from mmcore.rows import value_is_missing as value_is_missing  # re-exported: train_fit's


@dataclass
class TargetSpec:
    """What the data layer needs of one head: its target column and how to encode it."""

    name: str
    column: str
    head_class: type
    options: dict[str, Any] = field(default_factory=dict)

    def encode(
        self, column: Sequence[Any], errors: list[tuple[str, str] | None]
    ) -> list[np.ndarray | None]:
        """The rows' targets (``column``: the rows' values of :attr:`column`) encoded, ``None``
        for a row with an error; a missing or unencodable target is recorded in ``errors``."""
        out: list[np.ndarray | None] = [None] * len(errors)
        ok = []
        for i, value in enumerate(column):
            if errors[i] is not None:
                continue
            if is_missing_target(value):
                errors[i] = (self.column, MISSING_TARGET_REASON)
            else:
                ok.append(i)
        if not ok:
            return out
        try:
            encoded = np.asarray(
                self.head_class.encode_targets([column[i] for i in ok], self.options)
            )
        except ValueError:
            encoded = None  # find the bad rows one by one
        if encoded is not None and len(encoded) == len(ok):
            for j, i in enumerate(ok):
                out[i] = encoded[j]
            return out
        for i in ok:
            try:
                one = self.head_class.encode_targets([column[i]], self.options)
                out[i] = np.asarray(one)[0]
            except ValueError as exc:
                reason = f"target of head {self.name!r}: {exc}"
                if "classes" in self.options:  # a label outside the fitted vocabulary
                    reason = unknown_class_reason(self.name, reason)
                errors[i] = (self.column, reason)
        return out


def is_missing_target(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


@dataclass
class Processed:
    """The result for a batch of rows; ``errors[i]`` is ``(column, reason)`` or ``None``."""

    inputs: dict[str, list[np.ndarray | None]]
    targets: dict[str, list[np.ndarray | None]]
    errors: list[tuple[str, str] | None]


class RowProcessor:
    """Preprocesses rows of one split.

    Args:
        modalities: name -> fitted modality (its ``root`` already set for this split).
        columns: modality name -> the column(s) it reads.
        targets: the heads whose targets are encoded (those with a target column here).
        split: the split's name, for messages.
        file: the data file the split came from, for messages.
        source_rows: row in ``file`` of each split row, or ``None`` when they are the same.
        raise_errors: raise :class:`DataError` at the first bad row (``data.bad_rows="raise"``)
            instead of recording it.
        allow_missing: whether a row may lack some modalities (only used with ``raise_errors``,
            to stop early; the recorded table never depends on it).
    """

    def __init__(
        self,
        modalities: Mapping[str, Modality],
        columns: Mapping[str, Sequence[str]],
        targets: Sequence[TargetSpec],
        split: str,
        file: str | None = None,
        source_rows: np.ndarray | None = None,
        raise_errors: bool = True,
        allow_missing: bool = False,
        hint: bool = True,
    ) -> None:
        self.modalities = dict(modalities)
        self.columns = {k: list(v) for k, v in columns.items()}
        self.targets = list(targets)
        self.split = split
        self.file = file
        self.source_rows = source_rows
        self.raise_errors = raise_errors
        self.allow_missing = allow_missing
        self.hint = hint

    def bad_row(self, row: int, column: str, reason: str) -> BadRow:
        source = int(self.source_rows[row]) if self.source_rows is not None else None
        return BadRow(self.split, int(row), column, reason, self.file, source)

    def process(self, batch: Mapping[str, Sequence[Any]], rows: Sequence[int]) -> Processed:
        """Preprocess every row of ``batch``; ``rows`` are their indices in the split."""
        inputs, errors = preprocess_rows(self.modalities, self.columns, batch, rows, self.split)
        targets = {t.name: t.encode(batch[t.column], errors) for t in self.targets}
        for i, error in enumerate(errors):
            if error is not None:
                for values in (*inputs.values(), *targets.values()):
                    values[i] = None
        result = Processed(inputs, targets, errors)
        if self.raise_errors:
            for i, error in enumerate(self.final_errors(result)):
                if error is not None:
                    raise DataError(bad_row_message(self.bad_row(rows[i], *error), self.hint))
        return result

    def final_errors(self, result: Processed) -> list[tuple[str, str] | None]:
        """``result.errors`` plus rows that lack a modality while ``allow_missing`` is False."""
        return with_missing(result.inputs, result.errors, self.columns, self.allow_missing)

    def __call__(
        self, batch: Mapping[str, Sequence[Any]], indices: Sequence[int]
    ) -> dict[str, list]:
        """The ``Dataset.map`` function (batched, with indices): stored columns for the batch."""
        result = self.process(batch, indices)
        out: dict[str, list] = {
            ROW: list(indices),
            ERROR: [e[1] if e else None for e in result.errors],
            ERROR_COLUMN: [e[0] if e else None for e in result.errors],
        }
        for name, arrays in result.inputs.items():
            out.update(encode_arrays(modality_key(name), arrays))
        for name, arrays in result.targets.items():
            out.update(encode_arrays(target_key(name), arrays))
        return out


def cache_key(
    table_fingerprint: str,
    modalities: Mapping[str, Modality],
    columns: Mapping[str, Sequence[str]],
    targets: Sequence[TargetSpec],
    versions: Mapping[str, str | None],
) -> str:
    """The fingerprint of a preprocessed split: changes with the table, any modality's
    options or fitted state (``fingerprint()``), its root, class or plugin version, and any
    head's target column or options."""
    state = {
        "format": FORMAT_VERSION,
        "table": table_fingerprint,
        "modalities": {
            name: {
                "class": f"{type(m).__module__}.{type(m).__qualname__}",
                "version": versions.get(name),
                "columns": list(columns[name]),
                "root": str(Path(m.root).resolve()) if m.root is not None else None,
                "fingerprint": m.fingerprint(),
            }
            for name, m in sorted(modalities.items())
        },
        "targets": [
            {
                "name": t.name,
                "column": t.column,
                "class": f"{t.head_class.__module__}.{t.head_class.__qualname__}",
                "options": t.options,
            }
            for t in targets
        ],
    }
    text = json.dumps(state, sort_keys=True, default=repr)
    return hashlib.blake2b(text.encode(), digest_size=20).hexdigest()
