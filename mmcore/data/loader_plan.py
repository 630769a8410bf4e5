"""How a loader orders and serves a split's batches: :class:`LoaderPlan`, what a split's store
(:mod:`mmcore.data.split_store`) hands the loader it makes (:mod:`mmcore.data.split_loader`,
:mod:`mmcore.data.streaming`). A leaf: it imports nothing of mmcore."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LoaderPlan:
    """How a loader orders and serves a split's batches, whatever keeps the split (the
    arguments of :meth:`mmcore.data.module.DataModule.loader` but ``balanced``)."""

    batch_size: int
    shuffle: bool
    seed: int = 0
    epoch: int = 0
    num_workers: int = 0
    drop_last: bool = False
    rank: int = 0
    world_size: int = 1
    pin_memory: bool = False
    start_batch: int = 0
