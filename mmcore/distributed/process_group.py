"""What every strategy of several processes shares: :class:`ProcessGroupStrategy` joins the
process group and runs the collectives over it (see :mod:`mmcore.distributed`).

Environment variables:

``MMCORE_DIST_BACKEND``
    ``gloo`` or ``nccl`` (default: ``nccl`` when training on CUDA, else ``gloo``).
``MMCORE_DIST_TIMEOUT``
    seconds a collective operation waits for the other ranks before failing (default 600).
``MMCORE_DIST_SETUP_TIMEOUT``
    seconds the other ranks wait for rank 0 to prepare the run folder and preprocess the data
    (default 7200).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as tdist
from torch import Tensor, nn

from mmcore.distributed.launch import DistEnv
from mmcore.errors import SpecError, TrainingError
from mmcore.run import checkpoint as ck
from mmcore.spec.model import Spec
from mmcore.strategy import Rows, Strategy

T = TypeVar("T")

BACKEND_ENV = "MMCORE_DIST_BACKEND"
TIMEOUT_ENV = "MMCORE_DIST_TIMEOUT"
SETUP_TIMEOUT_ENV = "MMCORE_DIST_SETUP_TIMEOUT"
DEFAULT_TIMEOUT = 600.0
DEFAULT_SETUP_TIMEOUT = 7200.0


def _seconds(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise TrainingError(f"{name}={value!r}: expected a number of seconds > 0")
    return seconds


def local_batch_size(batch_size: int, world_size: int, source: str = "<spec>") -> int:
    """Rows per rank of the global ``train.batch_size``; :class:`SpecError` unless
    ``world_size`` divides it."""
    if batch_size % world_size:
        raise SpecError(source, [(
            "train.batch_size",
            f"{batch_size} is the global batch and must divide evenly among the {world_size} "
            f"processes; use a multiple of {world_size}, e.g. "
            f"{max(world_size, batch_size - batch_size % world_size)}",
        )])
    return batch_size // world_size


def select_device(device: torch.device, env: DistEnv, source: str = "<spec>") -> torch.device:
    """One process per device: a CUDA device becomes ``cuda:LOCAL_RANK``."""
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if env.local_rank >= count:
            raise SpecError(source, [("train.device", (
                f"LOCAL_RANK={env.local_rank}, but this machine has {count} CUDA device(s): "
                "start at most one process per GPU (torchrun --nproc-per-node)"
            ))])
        torch.cuda.set_device(env.local_rank)
        return torch.device("cuda", env.local_rank)
    if device.type != "cpu":
        raise SpecError(source, [("train.device", (
            f"{device.type!r} cannot train with several processes; use 'cuda' or 'cpu'"
        ))])
    return device


def rank_seed(seed: int, rank: int) -> int:
    """A per-rank seed from a shared one (rank 0 included, so no rank reuses ``seed``)."""
    return (seed + (rank + 1) * 0xC2B2AE3D27D4EB4F) % 2**63


class ProcessGroupStrategy(Strategy):
    """What every strategy of several processes shares: the process group and its
    collectives. :meth:`setup` joins the group (``init_process_group`` unless the caller
    already did); :meth:`close` destroys it if it made it."""

    def __init__(self, env: DistEnv) -> None:
        super().__init__()
        self.env = env
        self.backend = "gloo"
        self._setup_group: Any = None
        self._owns_group = False

    @property
    def rank(self) -> int:
        return self.env.rank

    @property
    def world_size(self) -> int:
        return self.env.world_size

    def setup(self, spec: Spec, device: torch.device) -> None:
        """Join the process group on ``device`` (``train.device`` resolved; CUDA becomes
        ``cuda:LOCAL_RANK``).
        The backend is ``nccl`` on CUDA, else ``gloo``, unless ``MMCORE_DIST_BACKEND`` says
        otherwise. Collectives fail after ``MMCORE_DIST_TIMEOUT`` seconds instead of waiting
        for a dead peer forever."""
        device = select_device(device, self.env, spec.source)
        timeout = timedelta(seconds=_seconds(TIMEOUT_ENV, DEFAULT_TIMEOUT))
        setup_timeout = timedelta(seconds=max(
            _seconds(SETUP_TIMEOUT_ENV, DEFAULT_SETUP_TIMEOUT), timeout.total_seconds()
        ))
        self._owns_group = not tdist.is_initialized()
        if self._owns_group:
            backend = os.environ.get(BACKEND_ENV, "").strip().lower() or (
                "nccl" if device.type == "cuda" else "gloo"
            )
            if backend not in ("gloo", "nccl"):
                raise TrainingError(f"{BACKEND_ENV}={backend!r}: expected gloo or nccl")
            if backend == "nccl" and device.type != "cuda":
                raise TrainingError(
                    f"{BACKEND_ENV}=nccl needs CUDA devices, but training runs on {device.type}"
                )
            tdist.init_process_group(
                backend, rank=self.env.rank, world_size=self.env.world_size, timeout=timeout
            )
        else:
            backend = str(tdist.get_backend())
            self.env = DistEnv(tdist.get_rank(), tdist.get_world_size(), self.env.local_rank)
        self.backend, self.device = backend, device
        # Waiting for rank 0 to preprocess a large dataset may take far longer than any
        # collective should, so those waits get their own group and timeout.
        self._setup_group = tdist.new_group(backend="gloo", timeout=setup_timeout)

    def close(self, failed: bool = False) -> None:
        """Leave the process group (destroyed only when :meth:`setup` created it). After a
        failure an NCCL group is left to the process's exit: destroying it could wait for
        collectives that the failed rank will never join."""
        if not tdist.is_initialized():
            return
        if not self._owns_group:
            if self._setup_group is not None:  # gloo: destroying it never waits
                tdist.destroy_process_group(self._setup_group)
        elif not (failed and self.backend == "nccl"):
            tdist.destroy_process_group()
        self._owns_group, self._setup_group = False, None

    def local_batch_size(self, batch_size: int) -> int:
        return math.ceil(batch_size / self.world_size)

    def check_batch_size(self, batch_size: int, source: str = "<spec>") -> None:
        local_batch_size(batch_size, self.world_size, source)

    def model_state(self, model: nn.Module) -> dict[str, Tensor]:
        return ck.model_tensors(model) if self.is_main else {}  # the same on every rank

    def optimizer_state(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
        return optimizer.state_dict() if self.is_main else {}

    # -- collectives --------------------------------------------------------------------
    def barrier(self) -> None:
        tdist.barrier()

    def broadcast(self, obj: T) -> T:
        box = [obj if self.is_main else None]
        tdist.broadcast_object_list(box, src=0)
        return box[0]  # type: ignore[return-value]

    def on_main(self, fn: Callable[[], T], *, share: bool = False) -> T | None:
        """Rank 0 runs ``fn`` while the others wait (up to the setup timeout). When ``fn``
        raises on rank 0, every other rank raises :class:`TrainingError` naming that error,
        so the whole run stops instead of waiting."""
        outcome: list[Any] = [None]
        error: BaseException | None = None
        if self.is_main:
            try:
                result = fn()
                outcome = [("ok", result if share else None)]
            except Exception as exc:
                error = exc
                outcome = [("error", f"{type(exc).__name__}: {exc}")]
            tdist.broadcast_object_list(outcome, src=0, group=self._setup_group)
            if error is not None:
                raise error
            return result
        tdist.broadcast_object_list(outcome, src=0, group=self._setup_group)
        kind, value = outcome[0]
        if kind == "error":
            raise TrainingError(f"rank 0 failed: {value}")
        return value

    def share_buffers(self, model: nn.Module) -> None:
        for buffer in model.buffers():
            tdist.broadcast(buffer, src=0)

    def sum_rows(self, sums: Tensor, rows: int) -> tuple[Tensor, int]:
        packed = torch.cat([sums.double().flatten(), sums.new_tensor([rows], dtype=torch.float64)])
        tdist.all_reduce(packed)
        return packed[:-1].to(sums.dtype).view_as(sums), int(round(packed[-1].item()))

    def gather(self, obj: T) -> list[T]:
        shards: list[Any] = [None] * self.world_size
        tdist.all_gather_object(shards, obj)
        return shards

    def gather_rows(self, rows: Rows, dedupe: bool) -> Rows:
        return _merge_shards(self.gather(rows), dedupe)

    def seed_epoch(self, seed: int) -> int:
        """Each rank draws its own dropout masks and augmentations: the seed is a pure
        function of ``(train.seed, epoch, rank)``, so a resumed run repeats them. Torch's
        global generator (dropout layers) is re-seeded from it too."""
        mine = rank_seed(seed, self.rank)
        torch.manual_seed((mine + 1) % 2**63)
        return mine

    def together(self, batches: Iterable[T]) -> Iterator[T]:
        """All ranks stop at the end of the shortest shard. One small all-reduce per batch
        keeps the ranks' optimizer steps, scheduler and step counts identical, which
        ``DistributedDataParallel.join`` would not."""
        flag = torch.zeros(1, dtype=torch.int32, device=self.device)
        for batch in batches:
            flag.fill_(1)
            tdist.all_reduce(flag, op=tdist.ReduceOp.MIN)
            if not flag.item():
                return
            yield batch
        flag.fill_(0)
        tdist.all_reduce(flag, op=tdist.ReduceOp.MIN)


def _merge_shards(
    shards: Sequence[tuple[dict[str, Tensor], dict[str, Tensor], Tensor]], dedupe: bool
) -> tuple[dict[str, Tensor], dict[str, Tensor], Tensor]:
    """Every rank's rows in one set; with ``dedupe``, each ``Batch.index`` once, in order."""
    index = torch.cat([shard[2] for shard in shards])
    keep: Tensor | None = None
    if dedupe:
        _, first = np.unique(index.numpy(), return_index=True)
        keep = torch.from_numpy(first)
        index = index[keep]

    def merged(parts: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        names = dict.fromkeys(name for part in parts for name in part)
        out = {}
        for name in names:
            value = torch.cat([part[name] for part in parts if name in part])
            out[name] = value if keep is None else value[keep]
        return out

    return merged([shard[0] for shard in shards]), merged([shard[1] for shard in shards]), index


__all__ = ["ProcessGroupStrategy", "local_batch_size", "rank_seed", "select_device"]
