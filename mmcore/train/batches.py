"""A training epoch's batches: this process's share of the training split in the epoch's order
(one order per ensemble member, :func:`~mmcore.train.members.member_seeds`), and each batch as a
step trains on it (augmented, modality dropout, on the device)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from mmcore.evaluate.masking import modality_dropout
from mmcore.train.epoch_state import EpochProgress
from mmcore.train.members import member_seeds
from mmcore.train.settings import TRAIN


def epoch_batches(trainer: Any, epoch: int, start: int) -> tuple[Iterator[Any], int]:
    """``trainer``'s batches of the training split in ``epoch`` from batch ``start``, and how
    many batches the epoch has. An ensemble's members each get their own order of the split
    (each item a tuple of batches, one per member), unless the split is streamed."""
    seeds = member_seeds(trainer.spec.train, trainer.data.streaming)
    loader, *others = (trainer._loader(TRAIN, shuffle=True, epoch=epoch, start_batch=start,
                                       seed=seed) for seed in seeds)
    try:
        total = start + len(loader)
    except TypeError:
        total = math.ceil(trainer.data.num_rows(TRAIN) / trainer.spec.train.batch_size)
    # starting the loader draws its base seed from torch's generator: before a resumed
    # epoch restores it (EpochProgress.begin)
    batches: Iterator[Any] = iter(loader)
    if trainer.data.streaming:  # streamed shards may differ in length
        batches = trainer.strategy.together(batches)
    if others:
        batches = zip(batches, *others, strict=True)
    return batches, total


def step_data(trainer: Any, batch: Any, progress: EpochProgress) -> tuple[Any, Any, int]:
    """``(inputs, targets, rows)`` of a training batch as the step trains on it: augmented
    (``progress.augment``), with modality dropout (``progress.dropout``), on the device; for an
    ensemble's tuple of batches, a tuple of each."""
    if isinstance(batch, tuple):  # one batch per ensemble member
        inputs, targets = zip(*(_one(trainer, b, progress) for b in batch), strict=True)
        return inputs, targets, len(batch[0])
    inputs, targets = _one(trainer, batch, progress)
    return inputs, targets, len(batch)


def _one(trainer: Any, batch: Any, progress: EpochProgress) -> tuple[dict[str, Any],
                                                                    dict[str, Any]]:
    train, device = trainer.spec.train, trainer.device
    inputs = {k: trainer.data.modalities[k].augment(v, progress.augment)
              for k, v in batch.inputs.items()}
    if train.modality_dropout > 0:
        inputs = modality_dropout(inputs, train.modality_dropout, progress.dropout)
    targets = batch.targets
    if device.type != "cpu":  # batches are built on the CPU
        inputs = {k: v.to(device, non_blocking=True) for k, v in inputs.items()}
        targets = {k: v.to(device, non_blocking=True) for k, v in targets.items()}
    return inputs, targets
