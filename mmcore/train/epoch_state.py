"""What an epoch in progress is made of, so a step checkpoint can hold it: the seeds of its
random draws, its running loss sums, and the settings its position depends on."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mmcore.errors import CheckpointError
from mmcore.spec.model import Spec

#: batches between progress-bar loss updates and non-finite-loss checks (each costs a sync)
LOG_EVERY = 20
#: mixed into the epoch's seed for the augmentation generator
AUGMENT_SEED = 0x5DEECE66D


def dropout_seed(seed: int, epoch: int) -> int:
    """The epoch's shared seed: a fixed mix of ``(seed, epoch)``, so that a resumed epoch
    draws the same masks."""
    return (seed * 0x9E3779B1 + epoch * 0x85EBCA77) % (2**63)


def flush_losses(pending: list[torch.Tensor], counts: list[int], end: int, sums: torch.Tensor,
                 bad_batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Add the pending batches' losses (``[total, *per head]`` each, ``counts`` rows each) to
    ``sums`` and note the first non-finite total in ``bad_batch`` (batch index, -1 while
    none); the pending batches are the ones just before batch ``end``. Empties both lists."""
    if not pending:
        return sums, bad_batch
    stacked = torch.stack(pending)
    weights = torch.tensor(counts, dtype=stacked.dtype).to(stacked.device, non_blocking=True)
    sums = sums + (stacked * weights.unsqueeze(1)).sum(dim=0)
    finite = torch.isfinite(stacked[:, 0])
    first = end - len(pending) + torch.argmin(finite.to(torch.uint8))
    bad_batch = torch.where((bad_batch < 0) & ~finite.all(), first, bad_batch)
    pending.clear()
    counts.clear()
    return sums, bad_batch


#: the settings a step checkpoint's position in its epoch depends on
POSITION_SETTINGS = ("batch_size", "accumulate", "seed", "sampler", "modality_dropout")


def position_settings(spec: Spec) -> dict[str, Any]:
    settings = {k: getattr(spec.train, k) for k in POSITION_SETTINGS}
    if spec.data.streaming:  # a stream's batches depend on how its workers split it
        settings["num_workers"] = spec.train.num_workers
    return settings


def check_position(path: Path, partial: Mapping[str, Any], epoch: int, world_size: int,
                    spec: Spec) -> None:
    """:class:`CheckpointError` unless a step checkpoint's epoch can go on here: as many
    processes as wrote it, and the settings its place in the epoch depends on unchanged."""
    fallback = f"or delete {path.name} to resume from the end of the epoch before"
    writers = len(partial["ranks"])
    if writers != world_size:
        raise CheckpointError(
            f"{path}: written inside epoch {epoch} by {writers} process(es); its epoch can "
            f"only go on with {writers} (each holds its share of the epoch), so resume on "
            f"{writers} process(es), {fallback}"
        )
    saved = partial.get("settings", {})
    now = position_settings(spec)
    changed = [f"train.{k}={saved[k]!r} (now {now.get(k)!r})" for k in saved
               if saved[k] != now.get(k)]
    if changed:
        raise CheckpointError(
            f"{path}: written inside epoch {epoch} with {', '.join(changed)}; the rest of the "
            f"epoch depends on them, so resume with the values it was written with, {fallback}"
        )
