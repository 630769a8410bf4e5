"""Fitted per-column state of a table and the transform of one row (numpy only).

A row becomes one float32 vector, in this order: the scaled numeric values, then (with
missing indicators) one 0/1 flag per numeric column, then one category id per categorical
column (id 0 is ``<unknown>``, id 1 ``<missing>``, the training categories from 2).
"""

from __future__ import annotations

import fnmatch
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import ndtri

UNKNOWN, MISSING = 0, 1
#: ids before the first training category
RESERVED = 2
#: quantiles kept per numeric column for ``scaling: quantile``
QUANTILES = 101


def is_missing_cell(cell: Any) -> bool:
    if cell is None:
        return True
    if isinstance(cell, float) and math.isnan(cell):
        return True
    return isinstance(cell, str) and not cell.strip()


def as_number(cell: Any) -> float | None:
    """A cell as a float, or ``None`` when it is not a number (bools are not numbers)."""
    if isinstance(cell, bool):
        return None
    if isinstance(cell, int | float | np.integer | np.floating):
        return float(cell)
    if isinstance(cell, str):
        try:
            return float(cell.strip())
        except ValueError:
            return None
    return None


def category(cell: Any) -> str:
    """A cell's category label: whole numbers read as integers (``3.0`` and ``"3"`` agree)."""
    number = as_number(cell)
    if number is not None and math.isfinite(number) and number == int(number):
        return str(int(number))
    return str(cell).strip()


@dataclass
class NumericColumn:
    name: str
    mean: float = 0.0
    std: float = 1.0
    quantiles: list[float] = field(default_factory=list)


@dataclass
class CategoricalColumn:
    name: str
    categories: list[str] = field(default_factory=list)

    @property
    def cardinality(self) -> int:
        """Embedding rows: the training categories plus <unknown> and <missing>."""
        return len(self.categories) + RESERVED


@dataclass
class TableState:
    """What :func:`fit_table` learns; JSON-ready through :meth:`to_json`."""

    numeric: list[NumericColumn]
    categorical: list[CategoricalColumn]
    columns: list[str]
    scaling: str
    indicators: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "columns": self.columns, "scaling": self.scaling, "indicators": self.indicators,
            "numeric": [vars(c) for c in self.numeric],
            "categorical": [vars(c) for c in self.categorical],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> TableState:
        return cls(
            numeric=[NumericColumn(**c) for c in doc["numeric"]],
            categorical=[CategoricalColumn(**c) for c in doc["categorical"]],
            columns=list(doc["columns"]), scaling=doc["scaling"],
            indicators=bool(doc["indicators"]),
        )

    @property
    def width(self) -> int:
        n = len(self.numeric)
        return n + (n if self.indicators else 0) + len(self.categorical)


def choose_categorical(columns: Sequence[str], patterns: Sequence[str] | str,
                       rows: Sequence[Sequence[Any]]) -> set[str]:
    """The categorical columns: those matching ``patterns``, or with ``"auto"`` those whose
    present training cells are not all numbers."""
    if patterns != "auto":
        return {c for c in columns if any(fnmatch.fnmatchcase(c, p) for p in patterns)}
    out = set()
    for j, name in enumerate(columns):
        cells = (row[j] for row in rows if not is_missing_cell(row[j]))
        if any(as_number(cell) is None for cell in cells):
            out.add(name)
    return out


def fit_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], options: Any) -> TableState:
    """Fit every column on the training rows (lists of cells in ``columns`` order)."""
    categorical = choose_categorical(columns, options.categorical, rows)
    numeric_cols, categorical_cols = [], []
    for j, name in enumerate(columns):
        cells = [row[j] for row in rows if not is_missing_cell(row[j])]
        if name in categorical:
            counts = Counter(category(c) for c in cells)
            kept = sorted((c for c, n in counts.items() if n >= options.min_frequency),
                          key=lambda c: (-counts[c], c))[: options.max_categories]
            categorical_cols.append(CategoricalColumn(name, kept))
            continue
        numbers = np.array([x for x in (as_number(c) for c in cells)
                            if x is not None and math.isfinite(x)], dtype=np.float64)
        col = NumericColumn(name)
        if numbers.size:
            col.mean = float(numbers.mean())
            std = float(numbers.std())
            col.std = std if std > 1e-12 else 1.0
            if options.scaling == "quantile":
                col.quantiles = np.quantile(numbers, np.linspace(0, 1, QUANTILES)).tolist()
        numeric_cols.append(col)
    return TableState(numeric_cols, categorical_cols, list(columns), options.scaling,
                      options.missing_indicators)


def transform_row(state: TableState, cells: Sequence[Any]) -> np.ndarray:
    """One row's cells -> the float32 vector described in the module docstring; a cell that
    is not a number in a numeric column is a ``ValueError`` naming the column."""
    if len(cells) != len(state.columns):
        raise ValueError(f"expected {len(state.columns)} cells ({', '.join(state.columns)}), "
                         f"got {len(cells)}")
    index = {name: j for j, name in enumerate(state.columns)}
    values, flags = [], []
    for col in state.numeric:
        cell = cells[index[col.name]]
        if is_missing_cell(cell):
            values.append(0.0)
            flags.append(1.0)
            continue
        x = as_number(cell)
        if x is None or not math.isfinite(x):
            raise ValueError(f"column {col.name!r}: {cell!r} is not a finite number (declare "
                             "the column in the categorical option if it holds categories)")
        values.append(_scale(col, x, state.scaling))
        flags.append(0.0)
    ids = []
    for col in state.categorical:
        cell = cells[index[col.name]]
        if is_missing_cell(cell):
            ids.append(MISSING)
            continue
        label = category(cell)
        ids.append(col.categories.index(label) + RESERVED if label in col.categories
                   else UNKNOWN)
    out = values + (flags if state.indicators else []) + [float(i) for i in ids]
    return np.asarray(out, dtype=np.float32)


def _scale(col: NumericColumn, x: float, scaling: str) -> float:
    if scaling == "standard":
        return (x - col.mean) / col.std
    if scaling == "quantile" and col.quantiles:
        q = np.asarray(col.quantiles)
        # ties (a column with few distinct values) take the middle of their rank range
        lo = np.interp(x, q, np.linspace(0, 1, len(q)))
        hi = 1 - np.interp(-x, -q[::-1], np.linspace(0, 1, len(q)))
        u = float(np.clip((lo + hi) / 2, 1e-4, 1 - 1e-4))
        return float(ndtri(u))
    return x
