"""Batches from a preprocessed split: a seeded, sharded batch sampler, one Arrow read per
batch, and collation into :class:`~mmcore.batch.Batch`."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import Sampler

from mmcore.batch import Batch
from mmcore.collate import collate_batch
from mmcore.data.storage import ROW, decode_arrays, modality_key, target_key
from mmcore.data.tables import as_arrow, as_numpy
from mmcore.modality import Modality


def epoch_order(n: int, shuffle: bool, seed: int, epoch: int) -> np.ndarray:
    """The order rows are visited in: a pure function of ``(seed, epoch)``."""
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n).astype(np.int64)


def balanced_order(classes: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """``len(classes)`` row positions drawn with replacement, each row with probability
    inversely proportional to its class's frequency (so each class present is drawn equally
    often on average): a pure function of ``(classes, seed, epoch)``.

    ``classes`` holds one class code per row (any comparable values).
    """
    n = len(classes)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    _, inverse, counts = np.unique(np.asarray(classes), return_inverse=True, return_counts=True)
    by_class = np.argsort(inverse.reshape(-1), kind="stable")  # rows grouped by class
    starts = np.cumsum(counts) - counts
    rng = np.random.default_rng([int(seed), int(epoch)])
    drawn = rng.integers(len(counts), size=n)  # a class, uniformly ...
    within = rng.integers(counts[drawn])  # ... then a row of it, uniformly
    return by_class[starts[drawn] + within].astype(np.int64)


class ShardedBatchSampler(Sampler[list[int]]):
    """Lists of row positions, one per batch, for one rank of ``world_size``.

    Like ``torch.utils.data.DistributedSampler`` followed by a ``BatchSampler``: every rank
    sees the same permutation for ``(seed, epoch)`` and takes every ``world_size``-th row of
    it starting at ``rank``. When the rows do not divide evenly the permutation is padded by
    repeating its first rows (so every rank runs the same number of steps), or with
    ``drop_last`` cut to a multiple of ``world_size``; ``drop_last`` also drops a last,
    short batch. Call :meth:`set_epoch` before each epoch when the sampler is reused.

    With ``balance_by`` (one class code per row) the epoch's global order is
    :func:`balanced_order` instead of a permutation (``shuffle`` is then ignored), sharded
    the same way.

    ``start_batch`` skips the epoch's first batches (a run resumed from a mid-epoch
    checkpoint): iteration and ``len`` start there, the order is unchanged.
    """

    def __init__(
        self,
        num_rows: int,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        epoch: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        balance_by: np.ndarray | None = None,
        start_batch: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}"
            )
        self.num_rows = num_rows
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = epoch
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        if balance_by is not None and len(balance_by) != num_rows:
            raise ValueError(f"balance_by has {len(balance_by)} codes for {num_rows} rows")
        self.balance_by = balance_by
        self.start_batch = start_batch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _per_rank(self) -> int:
        if self.drop_last:
            return self.num_rows // self.world_size
        return math.ceil(self.num_rows / self.world_size)

    def rows(self) -> np.ndarray:
        """This rank's row positions for the current epoch, in visiting order."""
        if self.balance_by is not None:
            order = balanced_order(self.balance_by, self.seed, self.epoch)
        else:
            order = epoch_order(self.num_rows, self.shuffle, self.seed, self.epoch)
        total = self._per_rank() * self.world_size
        if total > len(order) and len(order):
            order = np.resize(order, total)  # repeats from the start
        order = order[:total]
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        rows = self.rows()
        stop = len(rows) - len(rows) % self.batch_size if self.drop_last else len(rows)
        for start in range(self.start_batch * self.batch_size, stop, self.batch_size):
            yield rows[start : start + self.batch_size].tolist()

    def __len__(self) -> int:
        per_rank = self._per_rank()
        if self.drop_last:
            return max(per_rank // self.batch_size - self.start_batch, 0)
        return max(math.ceil(per_rank / self.batch_size) - self.start_batch, 0)


def mapped(files: Sequence[str]) -> pa.Table:
    """The Arrow stream files ``files`` (a preprocessing map's cache, as ``datasets`` writes
    it) memory-mapped as one table, in order: nothing is read until a batch is."""
    tables = [pa.ipc.open_stream(pa.memory_map(str(f))).read_all() for f in files]
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


class ArrowSplit(TorchDataset):
    """A preprocessed split for a map-style ``DataLoader``: ``__getitems__`` reads a whole
    batch as one Arrow table from the memory-mapped cache file; nothing is held in Python
    lists.

    It is the one home of the rows that survived preprocessing: ``table`` holds every
    stored row, bad ones included, so read the split through :meth:`read` and
    :meth:`columns`, never ``table`` itself.

    Args:
        table: the preprocessed split as stored: a ``pyarrow.Table`` (e.g. :func:`mapped`),
            or the ``datasets.Dataset`` of the preprocessing map (its Arrow table is kept).
        rows: the table positions that make up the split (bad rows left out), or ``None``
            for all of them.
        files: the cache files ``table`` maps, in order (none: a table in memory). A split
            with files is pickled (to a spawned worker) as their names, not their rows, and
            the set-up record (:mod:`mmcore.data.split_record`) lists them.
    """

    def __init__(
        self, table: Any, rows: np.ndarray | None = None, files: Sequence[str] = ()
    ) -> None:
        if not isinstance(table, pa.Table):  # a datasets.Dataset: its rows, zero-copy
            table = table.with_format("arrow")[:]
        self.table: pa.Table = table
        self.rows = rows
        self.files = [str(f) for f in files]
        self._batches = [b for b in table.to_batches() if b.num_rows]
        self._offsets = np.cumsum([0, *(b.num_rows for b in self._batches)], dtype=np.int64)

    def __getstate__(self) -> dict[str, Any]:
        if not self.files:
            return {"table": self.table, "rows": self.rows, "files": []}
        return {"table": None, "rows": self.rows, "files": self.files}

    def __setstate__(self, state: dict[str, Any]) -> None:
        table = state["table"] if state["table"] is not None else mapped(state["files"])
        self.__init__(table, state["rows"], state["files"])  # type: ignore[misc]

    def __len__(self) -> int:
        return self.table.num_rows if self.rows is None else len(self.rows)

    def __getitem__(self, index: int) -> pa.Table:
        return self.read([index])

    def __getitems__(self, indices: Sequence[int]) -> pa.Table:
        return self.read(indices)

    def read(self, indices: Sequence[int]) -> pa.Table:
        """The split's rows ``indices`` (positions within the split) as one Arrow table.

        One zero-copy slice per row, gathered from the record batches, so the cost grows
        with the batch, not the split (``pyarrow``'s ``take`` on a binary column of many
        record batches concatenates the whole column first).
        """
        positions = np.asarray(indices, dtype=np.int64)
        if self.rows is not None:
            positions = self.rows[positions]
        total = self.table.num_rows
        if len(positions) and (positions.min() < 0 or positions.max() >= total):
            raise IndexError(f"row positions out of range 0..{total - 1}")
        if not len(positions):
            return self.table.slice(0, 0)
        batch = np.searchsorted(self._offsets, positions, side="right") - 1
        starts = positions - self._offsets[batch]
        return pa.Table.from_batches(
            [self._batches[b].slice(start, 1)
             for b, start in zip(batch.tolist(), starts.tolist(), strict=True)],
            schema=self.table.schema,
        )

    def columns(self, names: Sequence[str]) -> pa.Table:
        """Every row of the split (bad rows left out), of the stored columns ``names`` only,
        as one Arrow table in split order."""
        table = self.table.select(list(names))
        return table if self.rows is None else table.take(as_arrow(self.rows))


class Collator:
    """Arrow rows of preprocessed arrays -> a :class:`Batch` (``modality.collate`` per
    modality, targets stacked, ``index`` = the rows' indices within their split)."""

    def __init__(self, modalities: Mapping[str, Modality], heads: Sequence[str]) -> None:
        self.modalities = dict(modalities)
        self.heads = list(heads)

    def __call__(self, table: pa.Table | list[pa.Table]) -> Batch:
        if isinstance(table, list):  # a DataLoader without __getitems__ support
            table = pa.concat_tables(table)
        inputs = {name: decode_arrays(table, modality_key(name)) for name in self.modalities}
        targets = {name: decode_arrays(table, target_key(name)) for name in self.heads
                   if target_key(name) in table.column_names}
        return collate_batch(self.modalities, inputs, targets, as_numpy(table.column(ROW)))
