"""A preprocessed split decoded once and held in memory, batched with one index per array.

A small split (``data.in_memory``: by default when its cached arrays take at most
:data:`AUTO_LIMIT_BYTES`) is read from the Arrow cache once, on first use, instead of once per
batch. A modality whose rows are all present and of one shape and dtype is held as one
``[N, ...]`` array, and a batch is one fancy index of it handed to
:meth:`~mmcore.modality.Modality.collate_stacked`; other modalities keep one array per row
and go through :meth:`~mmcore.modality.Modality.collate`. Targets and row indices are
``[N, ...]`` tensors indexed per batch. The batches are equal to those of
:class:`~mmcore.data.loader.Collator` over the same rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import Dataset as TorchDataset

from mmcore.batch import Batch
from mmcore.data.loader import ArrowSplit
from mmcore.data.storage import ROW, decode_arrays, decode_stacked, modality_key, target_key
from mmcore.data.tables import as_numpy
from mmcore.modality import Modality

#: ``data.in_memory="auto"`` holds a split in memory when its cached arrays take at most this
AUTO_LIMIT_BYTES = 1 << 30


def split_bytes(split: ArrowSplit) -> int:
    """The bytes the split's rows take in the cache (the table's bytes, pro rata)."""
    total = split.table.num_rows
    if total == 0:
        return 0
    return int(split.table.nbytes * len(split) / total)


def _read(split: ArrowSplit, key: str) -> pa.Table:
    """The split's stored arrays under ``key`` (data, shapes, dtypes), every row."""
    return split.columns([key, f"{key}.shape", f"{key}.dtype"])


def _stacked(table: pa.Table, key: str) -> np.ndarray:
    """The arrays under ``key`` stacked (one of each row's shape: targets are)."""
    stacked = decode_stacked(table, key)
    return stacked if stacked is not None else np.stack(decode_arrays(table, key))


class MemorySplit(TorchDataset):
    """A split's preprocessed arrays in memory; ``__getitems__`` returns a whole :class:`Batch`.

    Args:
        split: the split as stored in the cache.
        modalities: the fitted modalities, by name.
        heads: the heads whose targets the split holds.
    """

    def __init__(self, split: ArrowSplit, modalities: Mapping[str, Modality],
                 heads: Sequence[str]) -> None:
        self.modalities = dict(modalities)
        self.heads = list(heads)
        # every row at once, one stored array at a time (each read is a transient copy when
        # bad rows are left out): no per-row work where the arrays share one shape
        self.index = torch.from_numpy(as_numpy(split.columns([ROW]).column(ROW))
                                      .astype(np.int64))
        self.n = n = len(self.index)
        self.fixed: dict[str, np.ndarray] = {}
        self.ragged: dict[str, list[np.ndarray | None]] = {}
        for name in self.modalities:
            table = _read(split, modality_key(name))
            column = table.column(modality_key(name)).combine_chunks()
            stacked = decode_stacked(table, modality_key(name), column) if n else None
            if stacked is not None:
                self.fixed[name] = stacked
            else:
                self.ragged[name] = decode_arrays(table, modality_key(name))
        self.targets = {h: torch.from_numpy(_stacked(_read(split, target_key(h)),
                                                     target_key(h)))
                        for h in self.heads if n}
        held = sum(a.nbytes for a in self.fixed.values()) + sum(
            a.nbytes for arrays in self.ragged.values() for a in arrays if a is not None)
        #: the bytes of arrays a row holds, on average (at least 1)
        self.row_bytes = max(1, held // max(1, n))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Batch:
        return self.__getitems__([index])

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        idx = np.asarray(indices, dtype=np.int64)
        inputs: dict[str, Any] = {}
        for name, modality in self.modalities.items():
            if name in self.fixed:
                inputs[name] = modality.collate_stacked(self.fixed[name][idx])
            else:
                arrays = self.ragged[name]
                inputs[name] = modality.collate([arrays[i] for i in idx])
        t_idx = torch.from_numpy(idx)
        targets = {h: t.index_select(0, t_idx) for h, t in self.targets.items()}
        return Batch(inputs=inputs, targets=targets, index=self.index.index_select(0, t_idx))


def as_is(batch: Batch) -> Batch:
    """The ``collate_fn`` of a loader over a :class:`MemorySplit`, whose ``__getitems__``
    already returns the whole batch."""
    return batch
