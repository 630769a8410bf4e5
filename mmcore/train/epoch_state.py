"""The epoch in progress as one object (Lightning's ``Progress``): where this process is in
it, the seeds of its random draws and its running loss sums, so a step checkpoint can hold
it and a resume goes on from exactly there."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mmcore.errors import CheckpointError, TrainingError
from mmcore.run.state import restore_rng
from mmcore.spec.model import Spec

#: batches between progress-bar loss updates and non-finite-loss checks (each costs a sync)
LOG_EVERY = 20
#: mixed into the epoch's seed for the augmentation generator
AUGMENT_SEED = 0x5DEECE66D
#: the settings a step checkpoint's position in its epoch depends on
POSITION_SETTINGS = ("batch_size", "accumulate", "seed", "sampler", "modality_dropout")


def dropout_seed(seed: int, epoch: int) -> int:
    """The epoch's shared seed: a fixed mix of ``(seed, epoch)``, so that a resumed epoch
    draws the same masks."""
    return (seed * 0x9E3779B1 + epoch * 0x85EBCA77) % (2**63)


@dataclass
class EpochProgress:
    """This process's place in the epoch it trains and what its batches summed to.

    ``batch`` counts the epoch's batches done (a global index: every process is at the same
    one), ``start`` is where this pass began (> 0 when resumed inside the epoch) and
    ``total`` is the epoch's batches. Each batch's losses (``[total, *per head]``) wait on the
    device until :meth:`flush` adds them, row-weighted, to ``sums`` (a sync). ``dropout`` and
    ``augment`` are the epoch's generators for modality dropout and augmentation.

    One object lives as long as the trainer: :meth:`load_step_checkpoint` keeps a step
    checkpoint's state for :meth:`begin` of the epoch it was written in.
    """

    epoch: int = 0
    batch: int = 0
    start: int = 0
    total: int = 0
    rows: int = 0
    start_step: int = 0
    accumulate: int = 1
    sums: Tensor = field(default_factory=lambda: torch.zeros(1))
    dropout: torch.Generator = field(default_factory=torch.Generator)
    augment: torch.Generator = field(default_factory=torch.Generator)
    _bad_batch: Tensor = field(init=False, repr=False,  # the first non-finite batch, or -1
                               default_factory=lambda: torch.full((), -1, dtype=torch.long))
    _pending: list[Tensor] = field(init=False, repr=False, default_factory=list)
    _counts: list[int] = field(init=False, repr=False, default_factory=list)
    #: a loaded step checkpoint's state, until begin()
    _saved: dict[str, Any] | None = field(init=False, repr=False, default=None)

    @property
    def resume_batch(self) -> int:
        """The batch the next epoch starts at: a loaded step checkpoint's position, else 0."""
        return int(self._saved["batch"]) if self._saved is not None else 0

    def begin(self, epoch: int, *, total: int, seed: int, heads: int, step: int,
              accumulate: int, device: torch.device) -> None:
        """Start ``epoch`` (``total`` batches, ``heads`` loss heads, at optimizer ``step``,
        windows of ``accumulate`` batches) with generators seeded from ``seed``; a loaded step
        checkpoint's state replaces the fresh one, global RNGs included, so call this once the
        epoch's loader has started (that draws its base seed from torch's generator)."""
        self.epoch, self.total, self.start_step, self.accumulate = epoch, total, step, accumulate
        self.dropout = torch.Generator().manual_seed(seed)
        # augmentation draws from its own stream, so declaring it leaves dropout's draws alone
        self.augment = torch.Generator().manual_seed(seed ^ AUGMENT_SEED)
        self.sums = torch.zeros(heads + 1, device=device)
        self._bad_batch = torch.full((), -1, dtype=torch.long, device=device)
        self._pending.clear()
        self._counts.clear()
        self.batch = self.start = self.rows = 0
        saved, self._saved = self._saved, None
        if saved is not None:  # where the step checkpoint left this process
            self.batch = self.start = int(saved["batch"])
            self.load_state_dict(saved)
            restore_rng(saved["rng"])

    def window(self) -> tuple[bool, int]:
        """For the batch about to be trained: whether it ends an accumulation window (the
        optimizer steps after it), and how many batches that window has (the loss divisor;
        the epoch's last window may be short)."""
        i, accumulate = self.batch, self.accumulate
        ends = (i + 1) % accumulate == 0 or i + 1 == self.total
        first = (i // accumulate) * accumulate
        return ends, min(accumulate, self.total - first) if self.total > i else 1

    def checkpoint_due(self, step: int, every: int | None) -> bool:
        """Whether optimizer ``step``, just taken, is one of ``train.checkpoint_every``'s
        (``every``) inside the epoch (its end has its own checkpoint)."""
        if not every:
            return False
        return step % every == 0 and self.batch < self.total

    def add(self, losses: Tensor, rows: int) -> None:
        """Count one batch of ``rows`` rows whose mean losses are ``losses`` (detached)."""
        self._pending.append(losses)
        self._counts.append(rows)
        self.rows += rows
        self.batch += 1

    def flush(self, last_checkpoint: Path | None) -> None:
        """Add the pending batches' losses to ``sums``; :class:`TrainingError` if a batch's
        loss so far was not finite, naming it, its optimizer step and ``last_checkpoint``."""
        if self._pending:
            stacked = torch.stack(self._pending)
            weights = torch.tensor(self._counts, dtype=stacked.dtype)
            weights = weights.to(stacked.device, non_blocking=True)
            self.sums = self.sums + (stacked * weights.unsqueeze(1)).sum(dim=0)
            finite = torch.isfinite(stacked[:, 0])
            first = self.batch - len(self._pending) + torch.argmin(finite.to(torch.uint8))
            self._bad_batch = torch.where((self._bad_batch < 0) & ~finite.all(), first,
                                          self._bad_batch)
            self._pending.clear()
            self._counts.clear()
        index = int(self._bad_batch.item())
        if index < 0:
            return
        step = self.start_step + (index - self.start) // self.accumulate + 1
        last = last_checkpoint or "none (no epoch finished yet)"
        raise TrainingError(
            f"non-finite loss (nan or inf) at epoch {self.epoch}, batch {index + 1}/"
            f"{self.total} (optimizer step {step}); training stopped. The last good "
            f"checkpoint is {last}. Try a lower train.lr, train.grad_clip, precision '32', "
            "or look for extreme values in the data."
        )

    def running_loss(self) -> float:
        """The mean total loss of this process's flushed rows (for the progress bar)."""
        return (self.sums[0] / self.rows).item()

    def means(self, heads: Sequence[str],
              sum_rows: Callable[[Tensor, int], tuple[Tensor, int]]) -> dict[str, float]:
        """The epoch's row-averaged losses over every process (``sum_rows`` adds theirs):
        ``loss`` and ``<head>.loss``. Call after the last :meth:`flush`."""
        sums, rows = sum_rows(self.sums, self.rows)
        means = (sums / max(rows, 1)).tolist()
        out = {"loss": means[0]}
        out.update({f"{name}.loss": v for name, v in zip(heads, means[1:], strict=True)})
        return out

    def state_dict(self) -> dict[str, Any]:
        """This process's share of a step checkpoint (flush first): loss sums, rows and the
        generators' states."""
        return {"sums": self.sums.cpu(), "rows": self.rows,
                "dropout_rng": self.dropout.get_state(), "augment_rng": self.augment.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Put back what :meth:`state_dict` took (into the epoch :meth:`begin` started)."""
        self.dropout.set_state(state["dropout_rng"])
        self.augment.set_state(state["augment_rng"])
        self.sums = state["sums"].to(self.sums.device)
        self.rows = int(state["rows"])

    def step_checkpoint(self, gather: Callable[[Any], list[Any]], spec: Spec) -> dict[str, Any]:
        """A step checkpoint's ``partial`` entry: the position, every process's
        :meth:`state_dict` (``gather`` collects them, in rank order) and the settings the
        position depends on. Every process calls it."""
        return {"batch": self.batch, "ranks": gather(self.state_dict()),
                "settings": position_settings(spec)}

    def load_step_checkpoint(self, path: Path, state: Mapping[str, Any], rank: int,
                             world_size: int, spec: Spec) -> bool:
        """Keep the epoch state of the checkpoint ``state`` (read from ``path``) for the
        next :meth:`begin`, once :func:`check_position` allows it; False for the checkpoint
        of an epoch's end, which holds none."""
        partial = state.get("partial")
        if partial is None:
            return False
        check_position(path, partial, int(state["epoch"]) + 1, world_size, spec)
        self._saved = {"batch": int(partial["batch"]), **partial["ranks"][rank],
                       "rng": state["rng_ranks"][rank]}
        return True


def position_settings(spec: Spec) -> dict[str, Any]:
    """The settings a step checkpoint's position depends on, as ``spec`` has them."""
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
