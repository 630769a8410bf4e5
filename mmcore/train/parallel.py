"""Strategies for several processes on ``torch.distributed``: :class:`DDP` and :class:`FSDP`.

One process per device, started by ``torchrun`` (or ``mmcore train --nproc N``; see
:mod:`mmcore.train.launch`). What both do (see ``docs/distributed.md``):

* ``train.batch_size`` is the **global** batch: each of the N ranks takes ``batch_size / N``
  rows of it (an error when N does not divide it), so a run on N processes takes the same
  optimizer steps as a single-process run with the same settings.
* Rank 0 alone prepares the run folder, fits the modalities and preprocesses the data into the
  cache; the other ranks wait (:meth:`~ProcessGroupStrategy.on_main`), then load the fitted
  state from the run folder like a resume and read the cache. Rank 0 alone writes checkpoints,
  metrics, plots and shows progress; callbacks run on rank 0 only.
* Evaluation gathers every rank's outputs, drops the rows the sampler repeated to pad the
  shards (by ``Batch.index``) and computes the metrics over the whole split; rank 0's epoch
  record is broadcast so best epoch and early stopping are decided identically everywhere.
* Checkpoints hold the full, unsharded model and optimizer state (gathered to rank 0), in the
  single-process layout: a run resumes under any strategy, on any number of processes.

Environment variables:

``MMCORE_DIST_BACKEND``
    ``gloo`` or ``nccl`` (default: ``nccl`` when training on CUDA, else ``gloo``).
``MMCORE_DIST_TIMEOUT``
    seconds a collective operation waits for the other ranks before failing (default 600).
``MMCORE_DIST_SETUP_TIMEOUT``
    seconds the other ranks wait for rank 0 to prepare the run folder and preprocess the data
    (default 7200).
``MMCORE_DDP_FIND_UNUSED``
    ``1``: ``DistributedDataParallel(find_unused_parameters=True)``, for models whose forward
    leaves some trainable parameters unused.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as tdist
from torch import Tensor, nn

from mmcore.errors import SpecError, TrainingError
from mmcore.run import checkpoint as ck
from mmcore.spec.model import Spec
from mmcore.strategy import Rows, SingleProcess, Strategy, load_optimizer_state
from mmcore.train.launch import DistEnv, detect, find, record_failure

T = TypeVar("T")

BACKEND_ENV = "MMCORE_DIST_BACKEND"
TIMEOUT_ENV = "MMCORE_DIST_TIMEOUT"
SETUP_TIMEOUT_ENV = "MMCORE_DIST_SETUP_TIMEOUT"
FIND_UNUSED_ENV = "MMCORE_DDP_FIND_UNUSED"
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


class DDP(ProcessGroupStrategy):
    """``DistributedDataParallel``: a whole model on every rank, gradients averaged. The
    unwrapped model is what checkpoints store."""

    name = "ddp"

    def __init__(self, env: DistEnv) -> None:
        super().__init__(env)
        self._wrapped: nn.parallel.DistributedDataParallel | None = None

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` in a new ``DistributedDataParallel`` (which copies rank 0's weights to
        all): DDP hooks only the parameters that need a gradient when it is built."""
        find_unused = os.environ.get(FIND_UNUSED_ENV, "").lower() in {"1", "true", "yes"}
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        self._wrapped = None  # let the old wrapper's buckets go before the new ones
        self._wrapped = nn.parallel.DistributedDataParallel(
            model, device_ids=device_ids, find_unused_parameters=find_unused
        )
        return self._wrapped

    def sync_gradients(self, net: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
        if sync or not isinstance(net, nn.parallel.DistributedDataParallel):
            return contextlib.nullcontext()
        return net.no_sync()


class FSDP(ProcessGroupStrategy):
    """Fully sharded data parallel (torch's ``fully_shard``, FSDP2): each encoder, each head
    and the rest of the model is one unit whose parameters, gradients and optimizer state are
    split across the ranks and gathered for its forward and backward. Memory per rank falls
    with the number of ranks; the arithmetic is DDP's. Checkpoints gather the full state to
    rank 0, in the single-process layout."""

    name = "fsdp"

    def setup(self, spec: Spec, device: torch.device) -> None:
        if spec.data.streaming:  # every rank must run the same number of sharded forwards
            raise SpecError(spec.source, [("train.strategy", (
                "'fsdp' needs every rank to run the same number of batches, which streamed "
                "shards do not guarantee; use 'ddp' with data.streaming=true"))])
        super().setup(spec, device)

    def shard(self, model: nn.Module) -> None:
        from torch.distributed.fsdp import fully_shard

        for group in ("encoders", "heads"):
            for module in getattr(model, group, {}).values():
                if any(True for _ in module.parameters()):
                    fully_shard(module)
        fully_shard(model)

    def sync_gradients(self, net: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
        return _gradient_sync(net, sync)

    def model_state(self, model: nn.Module) -> dict[str, Tensor]:
        # every rank joins each tensor's all-gather, in the same order; rank 0 alone keeps
        # them, so one full copy is held at a time on the others
        full = {}
        for key, value in model.state_dict().items():
            whole = _full(value)
            if self.is_main:
                full[key] = whole
        return full

    def load_model_state(self, model: nn.Module, tensors: Mapping[str, Tensor],
                         path: str | Path) -> None:
        ck.check_weights(model, tensors, path)  # a DTensor's shape is the full shape
        own = model.state_dict()
        with torch.no_grad():
            model.load_state_dict({k: _like(v, own[k]) for k, v in tensors.items()})

    def optimizer_state(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
        state = optimizer.state_dict()  # torch's layout, each value this rank's shard
        full: dict[Any, dict[str, Any]] = {}
        for index, values in state["state"].items():
            gathered = {k: _full(v) for k, v in values.items()}
            if self.is_main:
                full[index] = gathered
        return {"state": full, "param_groups": state["param_groups"]} if self.is_main else {}

    def load_optimizer_state(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                             state: dict) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        try:
            sharded = {i: {k: _like(v, params[int(i)]) for k, v in values.items()}
                       for i, values in state["state"].items()}
        except IndexError:
            raise ValueError("the checkpoint holds state for more parameters than this "
                             "optimizer has") from None
        load_optimizer_state(optimizer, {**state, "state": sharded})


def _full(value: Any) -> Any:
    """A DTensor's whole tensor (an all-gather every rank joins), on the CPU."""
    from torch.distributed.tensor import DTensor

    if isinstance(value, DTensor):
        return value.full_tensor().detach().cpu()
    return value.detach().cpu() if isinstance(value, Tensor) else value


def _like(value: Any, like: Any) -> Any:
    """``value`` (a full tensor every rank read from the checkpoint) sharded as ``like``:
    each rank cuts its own shard, with no communication."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if isinstance(like, DTensor) and isinstance(value, Tensor) and value.shape == like.shape:
        return distribute_tensor(value.to(like.device), like.device_mesh, like.placements,
                                 src_data_rank=None)
    return value


@contextlib.contextmanager
def _gradient_sync(net: nn.Module, sync: bool) -> Iterator[None]:
    if sync:
        yield
        return
    net.set_requires_gradient_sync(False)  # type: ignore[operator]
    try:
        yield
    finally:
        net.set_requires_gradient_sync(True)  # type: ignore[operator]


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

    def merged(part: int) -> dict[str, Tensor]:
        names = dict.fromkeys(name for shard in shards for name in shard[part])
        out = {}
        for name in names:
            value = torch.cat([shard[part][name] for shard in shards if name in shard[part]])
            out[name] = value if keep is None else value[keep]
        return out

    return merged(0), merged(1), index


@contextlib.contextmanager
def worker_strategy(name: str = "ddp") -> Iterator[Strategy]:
    """The strategy of a command's process (one process unless torchrun started it), for
    the caller to :meth:`~Strategy.setup`; closed at the end of the block. An exception is
    first written where torchrun's launcher reads why this rank stopped."""
    env = detect()
    strategy = select_strategy(name, env)
    failed = True
    try:
        yield strategy
        failed = False
    except BaseException as exc:
        if env is not None:
            record_failure(exc, env)
        raise
    finally:
        strategy.close(failed=failed)


def select_strategy(name: str, env: DistEnv | None = None) -> Strategy:
    """The strategy for ``train.strategy`` (``auto``, ``ddp`` or ``fsdp``) in this process:
    :class:`SingleProcess` unless torchrun's environment (or a process group the caller
    initialized) puts it in a run of several processes, where ``auto`` means DDP."""
    env = env if env is not None else find()
    if env is None:
        return SingleProcess()
    return FSDP(env) if name == "fsdp" else DDP(env)


__all__ = ["DDP", "FSDP", "ProcessGroupStrategy", "local_batch_size", "select_device",
           "select_strategy", "worker_strategy"]
