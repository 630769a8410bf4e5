"""Which strategy a process uses: :func:`select_strategy` for ``train.strategy`` and
torchrun's environment, :func:`worker_strategy` for a command's process."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from mmcore.distributed.ddp import DDP
from mmcore.distributed.fsdp import FSDP
from mmcore.distributed.launch import DistEnv, detect, find, record_failure
from mmcore.strategy import SingleProcess, Strategy


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


__all__ = ["select_strategy", "worker_strategy"]
