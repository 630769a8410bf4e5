"""Data-parallel training on ``torch.distributed``: one process per device, started by
``torchrun`` (or ``mmcore train --nproc N``, which runs torchrun's launcher for you).

A process belongs to a distributed run when torchrun's environment says so: ``WORLD_SIZE``
greater than 1, with ``RANK`` and ``LOCAL_RANK`` (and ``MASTER_ADDR``/``MASTER_PORT`` for the
rendezvous). Without them the trainer runs in one process and nothing here is used.

What the trainer does with it (see ``docs/distributed.md``):

* ``train.batch_size`` is the **global** batch: each of the N ranks takes ``batch_size / N``
  rows of it (an error when N does not divide it), so a run on N processes takes the same
  optimizer steps as a single-process run with the same settings.
* The model is wrapped in ``DistributedDataParallel`` (gradients averaged over the ranks);
  the unwrapped model is what checkpoints store, so a run resumes on any number of processes.
* Rank 0 alone prepares the run folder, fits the modalities and preprocesses the data into the
  cache; the other ranks wait, then load the fitted state from the run folder like a resume and
  read the cache. Rank 0 alone writes checkpoints, metrics, plots and shows progress; callbacks
  run on rank 0 only.
* Validation gathers every rank's outputs, drops the rows the sampler repeated to pad the
  shards (by ``Batch.index``) and computes the metrics over the whole split; rank 0's epoch
  record is broadcast so best epoch and early stopping are decided identically everywhere.

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

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import pluggy
import torch
import torch.distributed as tdist
from torch import Tensor, nn

from mmcore.batch import Batch, ModalityBatch
from mmcore.errors import SpecError, TrainingError
from mmcore.model import MultimodalModel
from mmcore.plugins import hookspecs
from mmcore.train.evaluation import SplitResult, autocast_context, weighted_loss

T = TypeVar("T")

BACKEND_ENV = "MMCORE_DIST_BACKEND"
TIMEOUT_ENV = "MMCORE_DIST_TIMEOUT"
SETUP_TIMEOUT_ENV = "MMCORE_DIST_SETUP_TIMEOUT"
FIND_UNUSED_ENV = "MMCORE_DDP_FIND_UNUSED"
DEFAULT_TIMEOUT = 600.0
DEFAULT_SETUP_TIMEOUT = 7200.0
#: where torchrun tells each worker to write its error (read back by the launcher)
ERROR_FILE_ENV = "TORCHELASTIC_ERROR_FILE"


@dataclass(frozen=True)
class DistEnv:
    """This process's place in a distributed run, from torchrun's environment variables."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def detect(environ: Mapping[str, str] | None = None) -> DistEnv | None:
    """The distributed run this process belongs to, or ``None`` for a single process
    (``WORLD_SIZE`` unset or 1). Raises :class:`TrainingError` for inconsistent variables."""
    env = os.environ if environ is None else environ
    world = env.get("WORLD_SIZE", "").strip()
    if not world:
        return None
    try:
        world_size = int(world)
        rank = int(env.get("RANK", "-1"))
        local_rank = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise TrainingError(
            f"WORLD_SIZE={world!r}, RANK={env.get('RANK')!r}, LOCAL_RANK={env.get('LOCAL_RANK')!r}:"
            " expected integers (launch with torchrun, which sets them)"
        ) from None
    if world_size <= 1:
        return None
    if not 0 <= rank < world_size:
        raise TrainingError(
            f"WORLD_SIZE={world_size} but RANK={env.get('RANK')!r}: expected 0 <= RANK < "
            "WORLD_SIZE (launch with torchrun, which sets both)"
        )
    return DistEnv(rank, world_size, local_rank)


def find() -> DistEnv | None:
    """:func:`detect`, else the process group the caller already initialized (e.g. with
    ``torch.multiprocessing.spawn`` and an ``init_method``), else ``None``."""
    env = detect()
    if env is None and tdist.is_available() and tdist.is_initialized():
        world_size = tdist.get_world_size()
        if world_size > 1:
            rank = tdist.get_rank()
            env = DistEnv(rank, world_size, int(os.environ.get("LOCAL_RANK", rank)))
    return env


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


def silent_hooks() -> pluggy.PluginManager:
    """A trainer-event hook relay with no implementations: ranks other than 0 call no
    callbacks (they would log, write and notify once per rank)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


class Distributed:
    """The process group of a distributed run and the collective steps the trainer takes.

    Create it with :meth:`start`; :meth:`close` destroys the process group if it made it.
    """

    def __init__(
        self,
        env: DistEnv,
        device: torch.device,
        backend: str,
        setup_group: Any,
        owns_group: bool,
    ) -> None:
        self.env = env
        self.device = device
        self.backend = backend
        self._setup_group = setup_group
        self._owns_group = owns_group

    @property
    def rank(self) -> int:
        return self.env.rank

    @property
    def world_size(self) -> int:
        return self.env.world_size

    @property
    def is_main(self) -> bool:
        return self.env.rank == 0

    @property
    def shard(self) -> dict[str, int]:
        """``rank``/``world_size`` keyword arguments for ``DataModule.loader``."""
        return {"rank": self.env.rank, "world_size": self.env.world_size}

    @classmethod
    def start(cls, env: DistEnv, device: torch.device, source: str = "<spec>") -> Distributed:
        """Join the process group (``init_process_group`` unless the caller already did).

        ``device`` is the one ``train.device`` resolved to; a CUDA device is replaced by
        ``cuda:LOCAL_RANK``. The backend is ``nccl`` on CUDA, else ``gloo``, unless
        ``MMCORE_DIST_BACKEND`` says otherwise. Collectives fail after
        ``MMCORE_DIST_TIMEOUT`` seconds instead of waiting for a dead peer forever.
        """
        device = select_device(device, env, source)
        timeout = timedelta(seconds=_seconds(TIMEOUT_ENV, DEFAULT_TIMEOUT))
        setup_timeout = timedelta(seconds=max(
            _seconds(SETUP_TIMEOUT_ENV, DEFAULT_SETUP_TIMEOUT), timeout.total_seconds()
        ))
        owns = not tdist.is_initialized()
        if owns:
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
                backend, rank=env.rank, world_size=env.world_size, timeout=timeout
            )
        else:
            backend = str(tdist.get_backend())
            env = DistEnv(tdist.get_rank(), tdist.get_world_size(), env.local_rank)
        # Waiting for rank 0 to preprocess a large dataset may take far longer than any
        # collective should, so those waits get their own group and timeout.
        setup_group = tdist.new_group(backend="gloo", timeout=setup_timeout)
        return cls(env, device, backend, setup_group, owns)

    def close(self, failed: bool = False) -> None:
        """Leave the process group (destroyed only when :meth:`start` created it). After a
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

    # -- collectives --------------------------------------------------------------------
    def barrier(self) -> None:
        tdist.barrier()

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank (it must pickle)."""
        box = [obj if self.is_main else None]
        tdist.broadcast_object_list(box, src=0)
        return box[0]  # type: ignore[return-value]

    def on_main(self, fn: Callable[[], T], *, share: bool = False) -> T | None:
        """Run ``fn`` on rank 0 while the other ranks wait (up to the setup timeout).

        Rank 0 gets ``fn()``; the others get it too when ``share`` (it must pickle), else
        ``None``. When ``fn`` raises on rank 0, every other rank raises
        :class:`TrainingError` naming that error, so the whole run stops instead of waiting.
        """
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
        """Per-rank ``sums`` (any float tensor) and row counts added over every rank."""
        packed = torch.cat([sums.double().flatten(), sums.new_tensor([rows], dtype=torch.float64)])
        tdist.all_reduce(packed)
        return packed[:-1].to(sums.dtype).view_as(sums), int(round(packed[-1].item()))

    def seed_epoch(self, seed: int) -> int:
        """Seed torch for this rank from the epoch's shared ``seed`` and return a second
        per-rank seed (for modality dropout): each rank draws its own dropout masks, and the
        draws stay a pure function of ``(train.seed, epoch, rank)``, so a resumed run repeats
        them."""
        mine = rank_seed(seed, self.rank)
        torch.manual_seed((mine + 1) % 2**63)
        return mine

    # -- the model ----------------------------------------------------------------------
    def wrap(self, model: nn.Module) -> nn.parallel.DistributedDataParallel:
        """``model`` in ``DistributedDataParallel`` (which copies rank 0's weights to all)."""
        find_unused = os.environ.get(FIND_UNUSED_ENV, "").lower() in {"1", "true", "yes"}
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(
            model, device_ids=device_ids, find_unused_parameters=find_unused
        )

    def together(self, batches: Iterable[T]) -> Iterator[T]:
        """``batches`` while every rank still has one: all ranks stop at the end of the
        shortest shard (streamed shards differ in length). One small all-reduce per batch
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

    @torch.inference_mode()
    def evaluate(
        self,
        model: MultimodalModel,
        batches: Iterable[Batch],
        *,
        weights: Mapping[str, float],
        batch_size: int,
        precision: str = "32",
        transform: Callable[[dict[str, ModalityBatch]], dict[str, ModalityBatch]] | None = None,
        dedupe: bool = True,
    ) -> SplitResult:
        """Figures over the whole split from every rank's shard, the same on every rank.

        Each rank runs ``model`` (unwrapped, in eval mode) over its batches; the outputs,
        targets and ``Batch.index`` of every rank are gathered; with ``dedupe`` the rows the
        sampler repeated to pad the shards are dropped and the rest put in split order. The
        losses are then averaged over rows in chunks of ``batch_size`` (the global batch, so
        the chunks are a single process's batches) and the heads' metrics computed over all
        rows, as :func:`~mmcore.train.evaluation.evaluate_model` does in one process.
        """
        outputs, targets, index = _forward_shard(model, batches, self.device, precision, transform)
        shards: list[Any] = [None] * self.world_size
        tdist.all_gather_object(shards, (outputs, targets, index))
        outputs, targets, index = _merge_shards(shards, dedupe)
        rows = len(index)
        metrics: dict[str, float] = {}
        scored = [name for name in model.heads if name in targets]
        if rows and scored:
            sums = torch.zeros(len(scored) + 1, dtype=torch.float64, device=self.device)
            for start in range(0, rows, batch_size):
                chunk = slice(start, start + batch_size)
                out = {n: outputs[n][chunk].to(self.device) for n in scored}
                tgt = {n: targets[n][chunk].to(self.device) for n in scored}
                total, losses = weighted_loss(model, out, tgt, weights)
                sums += torch.stack([total, *losses]).double() * len(out[scored[0]])
            means = (sums / rows).tolist()
            metrics["loss"] = means[0]
            for name, value in zip(scored, means[1:], strict=True):
                metrics[f"{name}.loss"] = value
                scores = model.heads[name].metrics(outputs[name], targets[name])
                metrics.update({f"{name}.{metric}": float(v) for metric, v in scores.items()})
        return SplitResult(metrics, rows, outputs, targets)


def _forward_shard(
    model: MultimodalModel,
    batches: Iterable[Batch],
    device: torch.device,
    precision: str,
    transform: Callable[[dict[str, ModalityBatch]], dict[str, ModalityBatch]] | None,
) -> tuple[dict[str, Tensor], dict[str, Tensor], Tensor]:
    """This rank's outputs (float32), targets and row indices, concatenated, on the CPU."""
    was_training = model.training
    model.eval()
    outputs: dict[str, list[Tensor]] = {name: [] for name in model.heads}
    targets: dict[str, list[Tensor]] = {name: [] for name in model.heads}
    index: list[Tensor] = []
    try:
        for batch in batches:
            inputs = batch.inputs if transform is None else transform(batch.inputs)
            moved = Batch(inputs, batch.targets, batch.index).to(device, non_blocking=True)
            with autocast_context(device, precision):
                out = model(moved.inputs)
            for name in model.heads:
                outputs[name].append(out[name].float().cpu())
                if name in moved.targets:
                    targets[name].append(moved.targets[name].cpu())
            index.append(batch.index.cpu())
    finally:
        model.train(was_training)
    return (
        {k: torch.cat(v) for k, v in outputs.items() if v},
        {k: torch.cat(v) for k, v in targets.items() if v},
        torch.cat(index) if index else torch.zeros(0, dtype=torch.int64),
    )


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


# -- launching and failures ---------------------------------------------------------------
def record_failure(exc: BaseException, env: DistEnv | None = None) -> None:
    """Write ``exc`` where torchrun reads a worker's error (``TORCHELASTIC_ERROR_FILE``), so
    the launcher can say why this rank failed. Does nothing outside torchrun."""
    path = os.environ.get(ERROR_FILE_ENV)
    if not path:
        return
    now = time.time()
    message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    doc = {"message": message, "timestamp": int(now), "mmcore": {"time": now}}
    if env is not None:
        doc["mmcore"]["rank"] = env.rank
    try:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(doc, fh)
    except OSError:  # the error itself is still printed by the worker
        pass


def describe_failures(failures: Mapping[int, Any]) -> str:
    """``rank R failed: <reason>`` per failed rank (torchrun's ``ProcessFailure`` records),
    the earliest first: the others usually failed because it did."""

    def when(failure: Any) -> float:
        data = failure.error_file_data if isinstance(failure.error_file_data, dict) else {}
        extra = data.get("mmcore")
        if isinstance(extra, dict) and isinstance(extra.get("time"), int | float):
            return float(extra["time"])
        return float(failure.timestamp)

    def reason(failure: Any) -> str:
        message = failure.message
        if isinstance(message, dict):  # torchrun's @record format
            message = message.get("message", "")
        recorded = failure.error_file not in ("", "<N/A>") and message  # "<N/A>": no file
        if failure.exitcode < 0:
            signal = f"signal {failure.signal_name()}"
            if recorded:  # it had failed, and was stopped while exiting
                return f"{message} (then stopped by {signal})"
            return f"killed by {signal} (exit code {failure.exitcode})"
        if not recorded:
            return (f"exit code {failure.exitcode} without an error message (see that rank's "
                    "output above)")
        return f"{message} (exit code {failure.exitcode})"

    ordered = sorted(failures.items(), key=lambda item: (when(item[1]), item[0]))
    lines = [f"rank {rank} failed: {reason(failure)}" for rank, failure in ordered]
    if len(lines) > 1:
        lines.append("(in the order they failed: the first is usually the cause)")
    return "\n".join(lines)


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run ``python -m mmcore <argv>`` in ``nproc`` processes on this machine with torchrun's
    launcher (``torch.distributed.run --standalone``), and wait for them.

    Returns 0 when every rank succeeded. When a rank fails, torchrun stops the others and
    this raises :class:`TrainingError` with one ``rank R failed: <reason>`` line per failed
    rank. ``OMP_NUM_THREADS`` defaults to 1 per process, as with torchrun.
    """
    if nproc < 1:
        raise TrainingError(f"--nproc {nproc}: expected a number of processes >= 1")
    inside = detect()
    if inside is not None:
        raise TrainingError(
            f"--nproc: this process is already rank {inside.rank} of {inside.world_size} "
            "(started by torchrun); drop --nproc"
        )
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    args = parse_args(["--standalone", f"--nproc-per-node={nproc}", "--module", "mmcore", *argv])
    try:
        run(args)
    except ChildFailedError as exc:
        raise TrainingError(
            f"distributed training on {nproc} processes failed:\n"
            + describe_failures(exc.failures)
        ) from None
    except SignalException as exc:
        print(f"interrupted by signal {exc.sigval.name}: all ranks stopped", file=sys.stderr)
        return 128 + int(exc.sigval)
    return 0


__all__ = [
    "DistEnv",
    "Distributed",
    "describe_failures",
    "detect",
    "find",
    "launch",
    "local_batch_size",
    "record_failure",
    "select_device",
    "silent_hooks",
]
