"""Assigning rows to splits: by a split column, or a seeded (stratified) random split."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmcore.data.sources import SPLITS, split_name
from mmcore.errors import DataError


def read_column(dataset: Any, column: str) -> pa.ChunkedArray:
    """One column of a ``datasets.Dataset`` as Arrow (indices mappings applied, nothing decoded)."""
    return dataset.with_format("arrow")[column]


def rows_by_split_column(dataset: Any, column: str, file: str) -> dict[str, np.ndarray]:
    """``{split: row indices}`` from ``column``'s values (train/validation/test, or aliases)."""
    values = read_column(dataset, column)
    if values.null_count:
        first = int(np.flatnonzero(pc.is_null(values).to_numpy(zero_copy_only=False))[0])
        raise DataError(
            f"{file}: data.split_column {column!r} is empty in {values.null_count} row(s) "
            f"(first: row {first}); every row needs one of {', '.join(SPLITS)}"
        )
    encoded = pc.cast(values, pa.string()).combine_chunks().dictionary_encode()
    names = [split_name(v) for v in encoded.dictionary.to_pylist()]
    unknown = [raw for raw, name in zip(encoded.dictionary.to_pylist(), names, strict=True)
               if name not in SPLITS]
    if unknown:
        raise DataError(
            f"{file}: data.split_column {column!r} has value(s) {', '.join(map(repr, unknown))}; "
            f"expected {', '.join(SPLITS)} (or valid/val/dev for validation)"
        )
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    out: dict[str, np.ndarray] = {}
    for code, name in enumerate(names):
        rows = np.flatnonzero(codes == code)
        out[name] = np.sort(np.concatenate([out[name], rows])) if name in out else rows
    return {name: out[name] for name in SPLITS if name in out and len(out[name])}


def _allocate(sizes: np.ndarray, capacity: np.ndarray, fraction: float, total: int) -> np.ndarray:
    """Per-group counts summing to ``total`` (as far as ``capacity`` allows), proportional to
    ``sizes`` by largest remainders."""
    exact = sizes * fraction
    counts = np.minimum(np.floor(exact).astype(np.int64), capacity)
    remaining = total - int(counts.sum())
    for k in np.argsort(-(exact - np.floor(exact)), kind="stable"):
        if remaining <= 0:
            break
        if counts[k] < capacity[k]:
            counts[k] += 1
            remaining -= 1
    return counts


def seeded_split(
    n: int,
    validation: float,
    test: float,
    seed: int,
    labels: Sequence[Any] | None = None,
) -> dict[str, np.ndarray]:
    """``{split: sorted row indices}`` for ``n`` rows: ``validation`` and ``test`` fractions
    held out with ``numpy.random.default_rng(seed)``.

    With ``labels`` (one per row) the split is stratified: each label keeps its share in
    every split (by largest remainders) and at least one row of each label stays in train.
    Empty splits are left out.
    """
    if labels is None:
        groups = [np.arange(n)]
    else:
        keys = np.array([repr(v) for v in labels], dtype=object)
        _, codes = np.unique(keys, return_inverse=True)
        groups = [np.flatnonzero(codes == k) for k in range(int(codes.max(initial=-1)) + 1)]
    rng = np.random.default_rng(seed)
    perms = [rng.permutation(g) for g in groups]
    sizes = np.array([len(g) for g in groups], dtype=np.int64)
    keep = np.maximum(sizes - 1, 0) if labels is not None else sizes
    n_val = _allocate(sizes, keep, validation, round(n * validation))
    n_test = _allocate(sizes, keep - n_val, test, round(n * test))
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    for perm, v, t in zip(perms, n_val, n_test, strict=True):
        parts["validation"].append(perm[:v])
        parts["test"].append(perm[v : v + t])
        parts["train"].append(perm[v + t :])
    out = {}
    for name in SPLITS:
        rows = np.sort(np.concatenate(parts[name])) if parts[name] else np.empty(0, np.int64)
        if len(rows):
            out[name] = rows.astype(np.int64)
    return out
