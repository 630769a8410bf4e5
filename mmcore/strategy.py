"""Where a run's work happens: the device (:func:`resolve_device`) and the processes.

How the processes of a run train and evaluate together: one :class:`Strategy` object owns the
device, the process group, the model's wrapping, the collective steps and full-state
checkpoint IO, so neither the training loop nor the evaluation asks whether it is distributed
(as Lightning's strategies do). Training holds one, and so does a loaded run
(:func:`mmcore.load`, ``mmcore evaluate --nproc N``), which is why this module lies outside
:mod:`mmcore.train`.

* :class:`SingleProcess` — one process, one device (every hook below is the identity);
* :class:`~mmcore.distributed.DDP` — a whole model per process, gradients averaged;
* :class:`~mmcore.distributed.FSDP` — parameters, gradients and optimizer state sharded
  per encoder and head (torch's ``fully_shard``).

:func:`mmcore.distributed.select_strategy` picks one from ``train.strategy`` and
torchrun's environment. Checkpoints hold the same full, unsharded state whatever the strategy,
so a run resumes under any strategy and on any number of processes (from a step checkpoint
inside an epoch: on as many processes as wrote it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

import torch
from torch import Tensor, nn

from mmcore.errors import SpecError
from mmcore.run import checkpoint as ck
from mmcore.spec.model import Spec

T = TypeVar("T")
#: what :meth:`Strategy.gather_rows` takes and gives: outputs and targets per head, row indices
Rows = tuple[dict[str, Tensor], dict[str, Tensor], Tensor]


def resolve_device(name: str, source: str = "<spec>") -> torch.device:
    """``auto`` -> cuda, else mps, else cpu; an explicit device must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SpecError(
            source, [("train.device", f"unknown device {name!r}: expected auto, cpu, cuda, "
                      "cuda:N or mps")]
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SpecError(source, [("train.device", f"{name!r} requested but torch sees no CUDA")])
    if device.type == "cuda" and device.index is not None:
        if device.index >= torch.cuda.device_count():
            raise SpecError(source, [("train.device", f"{name!r}: there are only "
                                      f"{torch.cuda.device_count()} CUDA device(s)")])
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise SpecError(source, [("train.device", "'mps' requested but MPS is not available")])
    return device


#: group settings that say how the update runs, not what it computes: a checkpoint's values
#: (from an older mmcore, or another machine) must not replace this optimizer's
IMPLEMENTATION_KEYS = ("fused", "foreach", "name")


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """``optimizer.load_state_dict(state)``, keeping each group's :data:`IMPLEMENTATION_KEYS`.
    (``load_state_dict`` takes every group setting from the checkpoint: one written with
    ``foreach`` groups would turn a fused optimizer into a foreach one that still claims
    fused AMP scaling, which ``GradScaler.step`` then trips over.)"""
    kept = [{k: g[k] for k in IMPLEMENTATION_KEYS if k in g} for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, settings in zip(optimizer.param_groups, kept, strict=True):
        for key in IMPLEMENTATION_KEYS:
            group.pop(key, None)
        group.update(settings)
    # a checkpoint stores each tensor contiguous; torch's fused and foreach AdamW step a
    # parameter and its state as flat memory, so state of another layout than its parameter
    # (a channels-last convolution's weight) would be stepped element against wrong element
    for param, values in optimizer.state.items():
        for key, value in values.items():
            if (isinstance(value, Tensor) and value.shape == param.shape
                    and value.stride() != param.stride()):
                values[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


class Strategy:
    """One process on one device; the base of every strategy.

    The trainer calls, in order: :meth:`setup` (join the processes, pick the device),
    :meth:`shard` (before the optimizer is built), :meth:`wrap` (whenever which parameters
    train changes), the collectives during the run, and :meth:`close`. A subclass overrides
    what its processes do differently.
    """

    name = "single"

    def __init__(self) -> None:
        self.device = torch.device("cpu")

    # -- where this process stands ---------------------------------------------------------
    @property
    def rank(self) -> int:
        return 0

    @property
    def world_size(self) -> int:
        return 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run folder, shows progress and calls callbacks."""
        return self.rank == 0

    # -- life cycle -------------------------------------------------------------------------
    def setup(self, spec: Spec, device: torch.device) -> None:
        """Check that ``spec`` suits this strategy (:class:`SpecError` naming the field) and
        use ``device`` (``train.device`` resolved); a distributed strategy joins its process
        group here and may replace a CUDA device by this process's own."""
        self.device = device

    def close(self, failed: bool = False) -> None:
        """Leave whatever :meth:`setup` joined."""

    def local_batch_size(self, batch_size: int) -> int:
        """This process's rows of every global ``train.batch_size`` (rounded up: an
        evaluation's last process may get fewer)."""
        return batch_size

    def check_batch_size(self, batch_size: int, source: str = "<spec>") -> None:
        """:class:`SpecError` (``train.batch_size``) unless the processes can share every
        global batch evenly, as training needs."""

    def shard_args(self) -> dict[str, int]:
        """``rank``/``world_size`` keyword arguments for ``DataModule.loader``."""
        return {"rank": self.rank, "world_size": self.world_size}

    # -- collectives -----------------------------------------------------------------------
    def on_main(self, fn: Callable[[], T], *, share: bool = False) -> T | None:
        """Run ``fn`` on the main process while the others wait; they get its result when
        ``share`` (else ``None``), and raise when it failed there."""
        return fn()

    def barrier(self) -> None:
        """Wait until every process gets here."""

    def broadcast(self, obj: T) -> T:
        """The main process's ``obj`` on every process (it must pickle)."""
        return obj

    def sum_rows(self, sums: Tensor, rows: int) -> tuple[Tensor, int]:
        """Per-process loss ``sums`` and row counts added over every process."""
        return sums, rows

    def gather(self, obj: T) -> list[T]:
        """Every process's ``obj``, in rank order, on every process (it must pickle)."""
        return [obj]

    def gather_rows(self, rows: Rows, dedupe: bool) -> Rows:
        """Every process's evaluated rows in one set, the same on every process; with
        ``dedupe`` each row index once, in split order (drops the rows a sampler repeated to
        give every process the same number of batches)."""
        return rows

    def seed_epoch(self, seed: int) -> int:
        """The seed of this process's random draws (modality dropout, augmentation) in an
        epoch whose shared seed is ``seed``: a pure function of it, so a resume repeats it."""
        return seed

    def together(self, batches: Iterable[T]) -> Iterator[T]:
        """``batches`` while every process still has one (streamed shards differ in length)."""
        yield from batches

    # -- the model --------------------------------------------------------------------------
    def shard(self, model: nn.Module) -> None:
        """Shard ``model`` in place across the processes (before the optimizer is built)."""

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module the training forward calls; called again whenever the set of trainable
        parameters changes (an ``unfreeze_at`` epoch)."""
        return model

    def sync_gradients(self, net: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
        """Around a forward and backward: ``sync=False`` skips the gradient exchange on the
        batches inside a gradient-accumulation window."""
        return contextlib.nullcontext()

    def share_buffers(self, model: nn.Module) -> None:
        """Give every process the main process's buffers (BatchNorm's running statistics, which
        each process's last training step updated on its own batch), so that an evaluation
        runs the weights a checkpoint saves (a collective; nothing to do in one process)."""

    def model_state(self, model: nn.Module) -> dict[str, Tensor]:
        """The model's full state dict as CPU tensors on the main process (a collective:
        every process calls it; the others get an empty dict)."""
        return ck.model_tensors(model)

    def load_model_state(self, model: nn.Module, tensors: Mapping[str, Tensor],
                         path: str | Path) -> None:
        """Load a full state dict (names and shapes checked, :class:`CheckpointError`
        naming ``path``) into every process's model."""
        ck.apply_weights(model, tensors, path)

    def optimizer_state(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
        """The optimizer's state in torch's own layout (parameters numbered in group order),
        whole, on the main process (a collective; the others get an empty dict)."""
        return optimizer.state_dict()

    def load_optimizer_state(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                             state: dict) -> None:
        """Load what :meth:`optimizer_state` gave (from any strategy)."""
        load_optimizer_state(optimizer, state)


class SingleProcess(Strategy):
    """Training in this one process (no process group)."""


__all__ = ["Rows", "SingleProcess", "Strategy", "load_optimizer_state", "resolve_device"]
