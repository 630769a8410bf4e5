"""Assigning rows to splits: by a split column, or a seeded (stratified, optionally
group-aware) random split."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmcore.data.sources import SPLITS, split_name
from mmcore.data.tables import as_numpy
from mmcore.errors import DataError


def read_column(dataset: Any, column: str) -> pa.ChunkedArray:
    """One column of a ``datasets.Dataset`` as Arrow (indices mappings applied, nothing decoded)."""
    return dataset.with_format("arrow")[column]


def rows_by_split_column(dataset: Any, column: str, file: str) -> dict[str, np.ndarray]:
    """``{split: row indices}`` from ``column``'s values (train/validation/test, or aliases)."""
    values = _filled_column(dataset, column, file, "data.split_column",
                            f"one of {', '.join(SPLITS)}")
    encoded = pc.cast(values, pa.string()).combine_chunks().dictionary_encode()
    names = [split_name(v) for v in encoded.dictionary.to_pylist()]
    unknown = [raw for raw, name in zip(encoded.dictionary.to_pylist(), names, strict=True)
               if name not in SPLITS]
    if unknown:
        raise DataError(
            f"{file}: data.split_column {column!r} has value(s) {', '.join(map(repr, unknown))}; "
            f"expected {', '.join(SPLITS)} (or valid/val/dev for validation)"
        )
    codes = as_numpy(encoded.indices)
    out: dict[str, np.ndarray] = {}
    for code, name in enumerate(names):
        rows = np.flatnonzero(codes == code)
        out[name] = np.sort(np.concatenate([out[name], rows])) if name in out else rows
    return {name: out[name] for name in SPLITS if name in out and len(out[name])}


def group_ids(dataset: Any, column: str, file: str) -> list[Any]:
    """The values of ``data.split.group_column``; an empty one is a :class:`DataError`
    naming the column and the first such row."""
    values = _filled_column(dataset, column, file, "data.split.group_column",
                            "a group id (e.g. a signer or session)")
    return values.to_pylist()


def _filled_column(dataset: Any, column: str, file: str, field: str, needed: str
                   ) -> pa.ChunkedArray:
    """``column`` read as Arrow; a :class:`DataError` naming the field, the count and the
    first (0-based) row when a row leaves it empty."""
    values = read_column(dataset, column)
    if values.null_count:
        first = pc.indices_nonzero(pc.is_null(values))[0].as_py()
        raise DataError(
            f"{file}: {field} {column!r} is empty in {values.null_count} row(s) "
            f"(first: row {first}); every row needs {needed}"
        )
    return values


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


def _codes(values: Sequence[Any]) -> np.ndarray:
    keys = np.array([repr(v) for v in values], dtype=object)
    return np.unique(keys, return_inverse=True)[1].reshape(-1).astype(np.int64)


#: Seeded orders of the groups tried by :func:`grouped_split` (fewer with many groups).
GROUP_CANDIDATES = 32


def grouped_split(
    groups: Sequence[Any],
    validation: float,
    test: float,
    seed: int,
    labels: Sequence[Any] | None = None,
) -> dict[str, np.ndarray]:
    """``{split: sorted row indices}`` where every group (one id per row) lands whole in one
    split, so no group is on two sides.

    Groups are visited in a seeded random order and put in validation, else test, when that
    brings the split's row count closer to ``round(n * fraction)``. With ``labels`` a group is
    not moved out of train when it holds the last train rows of a class. Several seeded orders
    are tried and the best kept: fewest classes missing from train, then the row counts
    closest to the targets, then the class shares of validation/test closest to the whole
    table's. Deterministic for ``seed``; empty splits are left out.
    """
    n = len(groups)
    group = _codes(groups)
    sizes = np.bincount(group, minlength=int(group.max(initial=-1)) + 1)
    label = _codes(labels) if labels is not None else np.zeros(n, dtype=np.int64)
    n_labels = int(label.max(initial=-1)) + 1
    per_group = np.zeros((len(sizes), max(n_labels, 1)), dtype=np.int64)
    np.add.at(per_group, (group, label), 1)
    totals = per_group.sum(0)
    share = totals / max(n, 1)
    targets = (round(n * validation), round(n * test))
    rng = np.random.default_rng(seed)
    tries = max(1, min(GROUP_CANDIDATES, 200_000 // max(len(sizes), 1)))
    best: tuple[tuple[float, ...], np.ndarray] | None = None
    for _ in range(tries):
        where = np.zeros(len(sizes), dtype=np.int64)  # 0 train, 1 validation, 2 test
        left = list(targets)
        in_train = totals.copy()
        for g in rng.permutation(len(sizes)):
            size = int(sizes[g])
            for side in (0, 1):
                # closer to the target: |left - size| < left
                if left[side] <= 0 or size >= 2 * left[side]:
                    continue
                if labels is not None and ((in_train > 0) & (in_train == per_group[g])).any():
                    continue  # it holds the last train rows of a class
                where[g] = side + 1
                left[side] -= size
                in_train -= per_group[g]
                break
        counts = [per_group[where == k].sum(0) for k in (1, 2)]
        stray = sum(
            np.abs(c / c.sum() - share).sum() for c in counts if c.sum() > 0
        )
        score = (
            float(((in_train == 0) & (totals > 0)).sum()),
            float(abs(left[0]) + abs(left[1])),
            float(stray),
        )
        if best is None or score < best[0]:
            best = (score, where)
    assert best is not None
    row_split = best[1][group]
    out = {}
    for k, name in enumerate(SPLITS):
        rows = np.flatnonzero(row_split == k).astype(np.int64)
        if len(rows):
            out[name] = rows
    return out


def empty_split_reason(
    name: str,
    fraction: float,
    n: int,
    labels: Sequence[Any] | None = None,
    label_column: str | None = None,
    groups: Sequence[Any] | None = None,
    group_column: str | None = None,
) -> str | None:
    """Why the seeded (``groups``: group-aware) split of ``n`` rows gave ``name``
    (validation/test) no rows although ``data.split.<name>=fraction`` asks for some; ``None``
    when it asks for none. Worded for a warning."""
    if fraction <= 0:
        return None
    field = f"data.split.{name}={fraction}"
    target = round(n * fraction)
    if target == 0:
        return f"{field} of {n} rows rounds to 0 rows"
    if groups is None:
        if labels is None:
            return f"{field} gave no rows of {n}"
        return (f"every class of {label_column!r} has too few rows to give {name} one (at least "
                "one row of each class stays in train)")
    where = f"data.split.group_column={group_column!r}"
    group = _codes(groups)
    sizes = np.bincount(group)
    if len(sizes) == 1:
        return f"all {n} rows are in one group of {where}; a group goes whole to one split"
    if labels is not None:
        label = _codes(labels)
        per_group = np.zeros((len(sizes), int(label.max(initial=-1)) + 1), dtype=np.int64)
        np.add.at(per_group, (group, label), 1)
        totals = per_group.sum(0)
        holds_a_class = ((per_group == totals) & (totals > 0)).any(1)
        if holds_a_class.all():
            return (f"every group of {where} holds all the rows of some class of "
                    f"{label_column!r} (e.g. each class recorded in one session), so moving "
                    "any group out of train would leave train without that class")
    smallest = int(sizes.min())
    if smallest >= 2 * target:
        return (f"the smallest group of {where} has {smallest} rows, too many for the "
                f"{target} rows {field} asks for (raise the fraction, or use smaller groups)")
    return (f"no group of {where} that fits {name}'s {target} rows could leave train without "
            "taking the last train rows of a class or leaving the other split without one")
