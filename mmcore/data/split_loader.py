"""The ``DataLoader`` of one preprocessed split (:class:`~mmcore.data.loader.ArrowSplit`): a
seeded, sharded batch sampler over its rows, each batch read from the Arrow cache, or indexed
in memory when ``data.in_memory`` says so (:mod:`mmcore.data.memory`).

A streamed split has its own loader (:func:`mmcore.data.streaming.stream_loader`)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from mmcore.data.loader import ArrowSplit, Collator, ShardedBatchSampler
from mmcore.data.loader_plan import LoaderPlan
from mmcore.data.memory import AUTO_LIMIT_BYTES, MemorySplit, as_is, split_bytes
from mmcore.modality import Modality

#: a split held in memory builds its batches up to this many bytes of stored rows at a time (at
#: least one batch; collated, e.g. uint8 pixels as float32, they may take a few times more).
#: Built together rather than one between two training steps, the work's code and data stay in
#: the CPU's caches: a tiny model's step cost 0.070 ms more than on batches built beforehand with
#: one batch built between steps, 0.031 ms built ahead (``benchmarks/profile_step.py``)
AHEAD_BYTES = 4 << 20


class MemoryLoader(DataLoader):
    """The ``DataLoader`` of a split held in memory (a :class:`MemorySplit`, batched by its
    sampler), iterated without torch's per-batch machinery: its profiler range, fetcher and
    counters cost as much as building the batch (8 us of 27 on a small model). The same
    batches, and the same draw from torch's generator when an iteration starts (the base
    seed torch's iterator takes for its workers, even with none), so every later random
    number is the one a plain ``DataLoader`` gives. Pinned batches take torch's own path."""

    def __iter__(self) -> Iterator[Any]:
        if self.pin_memory:
            return super().__iter__()
        # drawn now, as torch's iterator does on creation (a resumed epoch restores the
        # generator after it), not at the first batch
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        return self._batches()

    def _batches(self) -> Iterator[Any]:
        """The batches, built ahead in groups: one batch, then twice as many each time while
        a group holds at most :data:`AHEAD_BYTES` of stored rows (so a reader of a few
        batches has few built)."""
        dataset: MemorySplit = self.dataset  # type: ignore[assignment]
        fetch, rows_ahead = dataset.__getitems__, max(1, AHEAD_BYTES // dataset.row_bytes)
        indices = iter(self.batch_sampler)  # type: ignore[arg-type]
        group = 1
        while ahead := [fetch(i) for i in itertools.islice(indices, group)]:
            if 2 * sum(len(batch) for batch in ahead) <= rows_ahead:
                group *= 2
            ahead.reverse()
            while ahead:  # handed over, not kept
                yield ahead.pop()


def head_names(table: ArrowSplit, heads: Iterable[str]) -> list[str]:
    """The heads of ``heads`` whose targets ``table`` holds, in that order."""
    names = set(table.table.column_names)
    return [n for n in heads if f"_t.{n}" in names]


def held_in_memory(
    table: ArrowSplit,
    in_memory: bool | str,
    modalities: Mapping[str, Modality],
    heads: Iterable[str],
) -> MemorySplit | None:
    """``table`` read into memory when ``in_memory`` (``data.in_memory``: ``True``,
    ``False``, or ``"auto"``: at most :data:`~mmcore.data.memory.AUTO_LIMIT_BYTES`) says so,
    else ``None``."""
    if in_memory is False or (in_memory == "auto" and split_bytes(table) > AUTO_LIMIT_BYTES):
        return None
    return MemorySplit(table, modalities, head_names(table, heads))


def split_loader(
    table: ArrowSplit,
    memory: MemorySplit | None,
    modalities: Mapping[str, Modality],
    heads: Iterable[str],
    plan: LoaderPlan,
    balance_by: np.ndarray | None = None,
) -> DataLoader:
    """The batches of ``table`` as ``plan`` orders them (see
    :meth:`mmcore.data.module.DataModule.loader`): from ``memory`` in this process when the
    split is held there, else read by ``plan.num_workers`` workers and collated by the
    ``modalities``. ``balance_by``: each row's class, to draw rows class-balanced
    (:func:`~mmcore.data.loader.balanced_order`)."""
    sampler = ShardedBatchSampler(
        len(table), plan.batch_size, shuffle=plan.shuffle, seed=plan.seed, epoch=plan.epoch,
        drop_last=plan.drop_last, rank=plan.rank, world_size=plan.world_size,
        balance_by=balance_by, start_batch=plan.start_batch,
    )
    if memory is not None:  # batched in this process: one index per array, no reads
        return MemoryLoader(memory, batch_sampler=sampler, collate_fn=as_is,
                            pin_memory=plan.pin_memory)
    return DataLoader(
        table,
        batch_sampler=sampler,
        collate_fn=Collator(modalities, head_names(table, heads)),
        num_workers=plan.num_workers,
        pin_memory=plan.pin_memory,
    )
