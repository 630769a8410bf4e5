"""How preprocessed arrays are stored in Arrow and read back.

Each stored array (a modality's value or a head's target for one row) takes three columns:
``<key>`` (large_binary: the array's bytes, null when the value is missing), ``<key>.shape``
(list of int32) and ``<key>.dtype`` (the numpy dtype name). Bytes make the layout independent
of the array's dtype and rank, so the table's schema is known before the first row is
processed, and a batch is read back with one copy of the batch's bytes and no per-element work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmcore.data.tables import as_numpy

if TYPE_CHECKING:  # imported where a schema is built: reading a table needs no datasets
    from datasets import Features

#: Bump when the stored layout changes; it is part of every cache key.
FORMAT_VERSION = "mmcore-data-1"

ROW = "_row"
ERROR = "_error"
ERROR_COLUMN = "_error_column"


def modality_key(name: str) -> str:
    return f"_m.{name}"


def target_key(name: str) -> str:
    return f"_t.{name}"


def array_features(key: str) -> dict[str, object]:
    from datasets import List, Value

    return {
        key: Value("large_binary"),
        f"{key}.shape": List(Value("int32")),
        f"{key}.dtype": Value("string"),
    }


def table_features(modalities: Sequence[str], heads: Sequence[str]) -> Features:
    """The schema of a preprocessed split."""
    from datasets import Features, Value

    feats: dict[str, object] = {
        ROW: Value("int64"),
        ERROR: Value("string"),
        ERROR_COLUMN: Value("string"),
    }
    for name in modalities:
        feats.update(array_features(modality_key(name)))
    for name in heads:
        feats.update(array_features(target_key(name)))
    return Features(feats)


def encode_arrays(key: str, arrays: Sequence[np.ndarray | None]) -> dict[str, list]:
    """Column values for ``arrays`` (``None`` = missing)."""
    data: list[bytes | None] = []
    shapes: list[list[int] | None] = []
    dtypes: list[str | None] = []
    for arr in arrays:
        if arr is None:
            data.append(None)
            shapes.append(None)
            dtypes.append(None)
        else:
            data.append(np.ascontiguousarray(arr).tobytes())
            shapes.append([int(s) for s in arr.shape])
            dtypes.append(arr.dtype.name)
    return {key: data, f"{key}.shape": shapes, f"{key}.dtype": dtypes}


def _raw(column: pa.Array, n: int) -> tuple[np.ndarray, np.ndarray, int]:
    """A binary column's bytes (one copy, writable), its offsets and the first offset."""
    _, offsets_buf, data_buf = column.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[column.offset : column.offset + n + 1]
    start, stop = int(offsets[0]), int(offsets[-1])
    if data_buf is None or stop == start:
        return np.empty(0, dtype=np.uint8), offsets, start
    return np.frombuffer(data_buf, dtype=np.uint8)[start:stop].copy(), offsets, start


def decode_stacked(table: pa.Table, key: str,
                   column: pa.Array | None = None) -> np.ndarray | None:
    """The arrays stored under ``key`` as one ``[N, ...]`` array (writable, its own copy of
    the bytes, no per-row work) when every row holds one of the same shape and dtype; else
    ``None`` (then :func:`decode_arrays`). ``column``: ``key``'s column already combined."""
    column = table.column(key).combine_chunks() if column is None else column
    n = len(column)
    dtypes = pc.unique(table.column(f"{key}.dtype")).drop_null().to_pylist()
    if n == 0 or column.null_count or len(dtypes) != 1:
        return None
    shapes = table.column(f"{key}.shape").combine_chunks()
    dims = as_numpy(shapes.value_lengths())
    values = shapes.flatten()
    if not (dims == dims[0]).all() or values.null_count:
        return None
    flat = as_numpy(values).reshape(n, int(dims[0]))
    if not (flat == flat[0]).all():
        return None
    raw, _, _ = _raw(column, n)
    return raw.view(np.dtype(dtypes[0])).reshape(n, *flat[0].tolist())


def decode_arrays(table: pa.Table, key: str) -> list[np.ndarray | None]:
    """The arrays stored under ``key`` in ``table``, ``None`` where missing.

    The returned arrays are writable views into one copy of the batch's bytes.
    """
    column = table.column(key).combine_chunks()
    stacked = decode_stacked(table, key, column)
    if stacked is not None:  # the common case: one reshape, no per-row work
        return list(stacked)
    n = len(column)
    if n == 0:
        return []
    raw, offsets, start = _raw(column, n)
    shapes = table.column(f"{key}.shape").combine_chunks()
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    offsets = offsets - start
    shape_list = shapes.to_pylist()
    dtype_list = table.column(f"{key}.dtype").to_pylist()
    out: list[np.ndarray | None] = []
    for i in range(n):
        if not valid[i]:
            out.append(None)
            continue
        chunk = raw[offsets[i] : offsets[i + 1]]
        out.append(chunk.view(np.dtype(dtype_list[i])).reshape(shape_list[i]))
    return out
