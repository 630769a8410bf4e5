"""Training settings checked against this machine and model: precision, determinism,
threads, epochs, and the metric that picks the best epoch (the device is
:func:`mmcore.strategy.resolve_device`'s, which a loaded run uses too)."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from mmcore.errors import SpecError
from mmcore.evaluate.monitor import monitored_metric
from mmcore.model import MultimodalModel

TRAIN, VALIDATION, TEST = "train", "validation", "test"
#: ``train.epochs="auto"``: at least this many optimizer steps...
AUTO_MIN_STEPS = 300
#: ...in at least this many and at most this many epochs
AUTO_MIN_EPOCHS, AUTO_MAX_EPOCHS = 10, 200
#: ``train.ema="auto"``: this decay, for a training split of at most this many rows and a run
#: of at least three of the average's horizons (``1 / (1 - decay)`` steps)
AUTO_EMA_DECAY, AUTO_EMA_MAX_ROWS = 0.99, 2_000


def resolve_epochs(epochs: int | str, rows: int, batch_size: int, accumulate: int = 1) -> int:
    """The number of epochs: ``epochs`` itself, or for ``"auto"`` enough epochs over ``rows``
    training rows for :data:`AUTO_MIN_STEPS` optimizer steps, clamped to
    [:data:`AUTO_MIN_EPOCHS`, :data:`AUTO_MAX_EPOCHS`]. A function of the data's size only,
    so a resumed run resolves it the same."""
    if epochs != "auto":
        return int(epochs)
    steps = max(1, math.ceil(math.ceil(max(rows, 1) / batch_size) / accumulate))
    return min(AUTO_MAX_EPOCHS, max(AUTO_MIN_EPOCHS, math.ceil(AUTO_MIN_STEPS / steps)))


def resolve_ema(ema: float | str | None, rows: int, steps: int,
                scheduler: str = "constant") -> float | None:
    """The decay of the weights' average: ``ema`` itself, or for ``"auto"``
    :data:`AUTO_EMA_DECAY` on small data (at most :data:`AUTO_EMA_MAX_ROWS` training rows)
    at a constant learning rate, in a run long enough for the average to forget its first
    weights (``steps`` optimizer steps), else ``None``: the gain was measured there
    (docs/results.md). A function of the data's size, so a resumed run resolves it the same."""
    if ema != "auto":
        return None if ema is None else float(ema)
    long_enough = steps >= round(3 / (1 - AUTO_EMA_DECAY))
    small = rows <= AUTO_EMA_MAX_ROWS and scheduler == "constant"
    return AUTO_EMA_DECAY if small and long_enough else None


def set_deterministic(mode: bool) -> None:
    """``torch.use_deterministic_algorithms(mode)``, without importing ``torch._inductor``
    only to set its flag when nothing has imported it yet: that import costs seconds of
    start-up, and mmcore never compiles models (a later ``torch.compile`` user should call
    ``torch.use_deterministic_algorithms`` themselves)."""
    if "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(mode)
    else:
        torch._C._set_deterministic_algorithms(mode)


def check_precision(precision: str, device: torch.device, source: str = "<spec>") -> None:
    """fp16 needs CUDA (a gradient scaler); bf16 autocast runs on CPU and CUDA."""
    if precision == "fp16" and device.type != "cuda":
        raise SpecError(source, [("train.precision", f"fp16 needs a CUDA device, the device is "
                                  f"{device.type}; use precision 'bf16' or '32'")])
    if precision == "bf16" and device.type not in ("cpu", "cuda"):
        raise SpecError(source, [("train.precision", f"bf16 runs on cpu or cuda, not "
                                  f"{device.type}; use precision '32'")])


@dataclass
class Monitor:
    """The figure that picks the best epoch.

    Attributes:
        name: as given in the spec, e.g. ``label.accuracy`` or ``loss``.
        key: its key in an epoch record, e.g. ``validation/label.accuracy``.
        greater_is_better: direction.
    """

    name: str
    key: str
    greater_is_better: bool

    def better(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        if not math.isfinite(value):
            return False
        return value > best if self.greater_is_better else value < best

    def improves(self, record: Mapping[str, Any], best: Mapping[str, Any] | None) -> bool:
        """Whether the epoch ``record`` beats the best epoch's record so far: its monitored
        figure is better, or equal with a lower validation loss. A small validation split
        often reaches its best accuracy early and holds it (a tie); the later epoch with the
        lower loss is then the better-trained model, where the first would be kept."""
        value = record.get(self.key, float("nan"))
        if best is None or self.better(value, best.get(self.key)):
            return True
        loss_key = f"{VALIDATION}/loss"
        if self.key == loss_key or value != best.get(self.key):
            return False
        loss, best_loss = record.get(loss_key), best.get(loss_key)
        return (isinstance(loss, float) and isinstance(best_loss, float)
                and math.isfinite(loss) and loss < best_loss)


def resolve_monitor(
    requested: str | None, model: MultimodalModel, has_validation: bool, source: str
) -> Monitor:
    """``train.monitor`` checked against the heads' metrics; default: the first head's first
    metric. Without a validation split the training loss is monitored."""
    name, greater_is_better = monitored_metric(requested, model.heads, source)
    if not has_validation:
        return Monitor("loss", f"{TRAIN}/loss", False)
    return Monitor(name, f"{VALIDATION}/{name}", greater_is_better)


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


def resolve_threads(
    setting: int | str, num_workers: int, local_processes: int = 1, current: int | None = None
) -> int:
    """Intra-op threads for ``train.threads``: a number as given; ``"auto"``: the usable
    cores shared among the machine's ``local_processes`` training processes, less one per
    DataLoader worker (each worker runs one thread), at least 1 — so workers and intra-op
    threads never oversubscribe the cores — and never more than ``current`` (the process's
    setting: ``OMP_NUM_THREADS`` or an earlier ``torch.set_num_threads``)."""
    if setting != "auto":
        return int(setting)
    share = max(1, usable_cores() // max(1, local_processes) - num_workers)
    return min(share, current) if current else share
