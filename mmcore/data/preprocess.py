"""Raw rows -> preprocessed arrays and encoded targets, with bad rows recorded per row.

:class:`RowProcessor` is the function given to ``datasets.Dataset.map``; it is also used
directly for prediction (:meth:`mmcore.data.DataModule.batch_from_rows`). It records errors
that do not depend on the bad-row policy in the table (``_error``/``_error_column``), so a
cached table serves every policy; a missing modality is stored as null and judged against
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
    ALL_MISSING_REASON,
    MISSING_REASON,
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
from mmcore.rows import check_array as _check_array
from mmcore.rows import modality_value, row_context, value_is_missing


@dataclass
class TargetSpec:
    """What the data layer needs of one head: its target column and how to encode it."""

    name: str
    column: str
    head_class: type
    options: dict[str, Any] = field(default_factory=dict)


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
        n = len(rows)
        errors: list[tuple[str, str] | None] = [None] * n
        missing_any = [False] * n
        inputs: dict[str, list[np.ndarray | None]] = {}
        for name, modality in self.modalities.items():
            columns = self.columns[name]
            label = ",".join(columns)
            context_columns = modality.context_columns()
            out: list[np.ndarray | None] = [None] * n
            for i in range(n):
                if errors[i] is not None:
                    continue
                value = modality_value(batch, columns, i)
                if value_is_missing(modality, value, columns):
                    missing_any[i] = True
                    continue
                try:
                    if context_columns:
                        arr = modality.preprocess_row(value, row_context(batch, context_columns, i))
                    else:
                        arr = modality.preprocess(value)
                except ValueError as exc:
                    errors[i] = (label, str(exc) or type(exc).__name__)
                    continue
                except Exception as exc:
                    exc.add_note(
                        f"(raised by modality {name!r} ({type(modality).__name__}) preprocessing"
                        f" split {self.split!r}, row {rows[i]}, column {label!r}; plugins must"
                        " raise ValueError for bad input)"
                    )
                    raise
                out[i] = _check_array(arr, modality, name)
            inputs[name] = out
        for i in range(n):
            if errors[i] is None and all(inputs[m][i] is None for m in inputs):
                errors[i] = (",".join(c for m in self.columns for c in self.columns[m]),
                             ALL_MISSING_REASON)
        targets = {t.name: self._encode_targets(t, batch, errors) for t in self.targets}
        for i in range(n):
            if errors[i] is not None:
                for values in (*inputs.values(), *targets.values()):
                    values[i] = None
        if self.raise_errors:
            self._raise_first(rows, errors, inputs, missing_any)
        return Processed(inputs, targets, errors)

    def _encode_targets(
        self,
        target: TargetSpec,
        batch: Mapping[str, Sequence[Any]],
        errors: list[tuple[str, str] | None],
    ) -> list[np.ndarray | None]:
        column = batch[target.column]
        out: list[np.ndarray | None] = [None] * len(errors)
        ok = []
        for i, value in enumerate(column):
            if errors[i] is not None:
                continue
            if is_missing_target(value):
                errors[i] = (target.column, MISSING_TARGET_REASON)
            else:
                ok.append(i)
        if not ok:
            return out
        try:
            encoded = np.asarray(
                target.head_class.encode_targets([column[i] for i in ok], target.options)
            )
        except ValueError:
            encoded = None  # find the bad rows one by one
        if encoded is not None and len(encoded) == len(ok):
            for j, i in enumerate(ok):
                out[i] = encoded[j]
            return out
        for i in ok:
            try:
                one = target.head_class.encode_targets([column[i]], target.options)
                out[i] = np.asarray(one)[0]
            except ValueError as exc:
                reason = f"target of head {target.name!r}: {exc}"
                if "classes" in target.options:  # a label outside the fitted vocabulary
                    reason = unknown_class_reason(target.name, reason)
                errors[i] = (target.column, reason)
        return out

    def final_errors(self, result: Processed) -> list[tuple[str, str] | None]:
        """``result.errors`` plus rows that lack a modality while ``allow_missing`` is False."""
        errors = list(result.errors)
        if self.allow_missing:
            return errors
        for i, error in enumerate(errors):
            if error is None:
                for name, values in result.inputs.items():
                    if values[i] is None:
                        errors[i] = (",".join(self.columns[name]), MISSING_REASON)
                        break
        return errors

    def _raise_first(self, rows, errors, inputs, missing_any) -> None:
        for i, error in enumerate(errors):
            if error is not None:
                raise DataError(bad_row_message(self.bad_row(rows[i], *error), self.hint))
            if missing_any[i] and not self.allow_missing:
                name = next(m for m in inputs if inputs[m][i] is None)
                column = ",".join(self.columns[name])
                bad = self.bad_row(rows[i], column, MISSING_REASON)
                raise DataError(bad_row_message(bad, self.hint))

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
