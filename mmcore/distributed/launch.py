"""Starting a run on several processes and reading where this process stands in one.

A process belongs to a distributed run when torchrun's environment says so: ``WORLD_SIZE``
greater than 1, with ``RANK`` and ``LOCAL_RANK`` (and ``MASTER_ADDR``/``MASTER_PORT`` for the
rendezvous). ``mmcore train --nproc N`` runs torchrun's launcher for you (:func:`launch`) and
reports a failed run as one line per failed rank (:func:`describe_failures`). What the
processes do together is the strategy's business (:mod:`mmcore.distributed`).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch.distributed as tdist

from mmcore.errors import TrainingError
from mmcore.run.atomic import atomic_write_bytes

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


def record_failure(exc: BaseException, env: DistEnv | None = None) -> None:
    """Write ``exc`` where torchrun reads a worker's error (``TORCHELASTIC_ERROR_FILE``), so
    the launcher can say why this rank failed. Does nothing outside torchrun."""
    path = os.environ.get(ERROR_FILE_ENV)
    if not path:
        return
    now = time.time()
    message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    extra: dict[str, Any] = {"time": now}
    if env is not None:
        extra["rank"] = env.rank
    doc = {"message": message, "timestamp": int(now), "mmcore": extra}
    try:
        # whole or not at all: the launcher stops the other ranks with SIGTERM when one fails,
        # and reads each failed rank's file; a rank stopped half-way through writing it left
        # an empty file, on which torchrun's launcher itself crashed (JSONDecodeError)
        atomic_write_bytes(path, json.dumps(doc).encode("utf-8"))
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
    rank. ``OMP_NUM_THREADS`` defaults to 1 per process, as with torchrun. The ranks die
    with this process, also when it is SIGKILLed (:mod:`mmcore.cli.lifeline`).
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

    from mmcore.cli.lifeline import launched_by

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    launched_by(os.getpid())  # each rank dies with this process (mmcore.cli.lifeline)
    args = parse_args(["--standalone", f"--nproc-per-node={nproc}", "--module", "mmcore", *argv])
    try:
        run(args)
    except ChildFailedError as exc:
        raise TrainingError(
            f"mmcore {argv[0] if argv else ''} on {nproc} processes failed:\n"
            + describe_failures(exc.failures)
        ) from None
    except SignalException as exc:
        print(f"interrupted by signal {exc.sigval.name}: all ranks stopped", file=sys.stderr)
        return 128 + int(exc.sigval)
    return 0


__all__ = ["DistEnv", "describe_failures", "detect", "find", "launch", "record_failure"]
