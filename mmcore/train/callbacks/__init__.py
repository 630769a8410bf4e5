"""Trainer callbacks: how they are wired, and the built-in ones.

A callback is a class whose methods marked ``@mmcore.hookimpl`` (the events of
:data:`EVENT_HOOKS`: ``on_train_start``, ``on_train_epoch_start``, ``on_train_batch_end``,
``on_validation_end``, ``on_epoch_end``, ``on_checkpoint_saved``, ``on_train_end``,
``on_exception``) are called with the trainer; implement only those you need. The built-in
ones are written as a user's would be: the loggers ``csv`` and ``tensorboard`` here (named
in ``train.callbacks``; they stay in this module because run folders' ``spec.json`` name
them as ``mmcore.train.callbacks:Class``, which the trust rules of :mod:`mmcore.spec.trust`
accept for classes defined in the registered module), and the jobs a trainer turns on by
itself, one module each (:mod:`~mmcore.train.callbacks.defaults`). How they are named,
created and registered is :mod:`~mmcore.train.callbacks.wiring`'s. The experiment trackers
(``mlflow``, ``wandb``) are in :mod:`mmcore.train.trackers`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmcore.plugins.hookspecs import EVENT_HOOKS, hookimpl
from mmcore.run.atomic import atomic_write_text, csv_text
from mmcore.spec.callback_paths import callback_class, check_callback_path
from mmcore.train.callbacks.wiring import callback_manager, silent_hooks
from mmcore.train.trackers.base import missing_package

__all__ = [
    "CSV_FILE",
    "EVENT_HOOKS",
    "TENSORBOARD_DIR",
    "CSVLogger",
    "TensorBoardLogger",
    "callback_class",
    "callback_manager",
    "check_callback_path",
    "silent_hooks",
    "write_csv",
]

TENSORBOARD_DIR = "tensorboard"
CSV_FILE = "metrics.csv"


class CSVLogger:
    """Writes ``metrics.csv`` in the run folder: one row per epoch, one column per figure
    (``epoch``, ``step``, ``lr``, ``seconds``, ``train/loss``, ``validation/<head>.<metric>``
    ...). The file is rewritten whole each epoch, so it stays right after a resume."""

    @hookimpl
    def on_epoch_end(self, trainer: Any, epoch: int, metrics: Mapping[str, float]) -> None:
        write_csv(Path(trainer.run_dir) / CSV_FILE, trainer.history)


def write_csv(path: Path, rows: list[Mapping[str, Any]]) -> None:
    """``rows`` as a CSV file (written atomically), the columns in order of first use;
    a non-finite float is written as its name."""
    atomic_write_text(path, csv_text(rows))


class TensorBoardLogger:
    """Writes TensorBoard event files to ``run/tensorboard``: every per-epoch figure as a
    scalar at its epoch. Needs ``pip install mmcore-torch[tensorboard]``."""

    def __init__(self) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise missing_package("tensorboard", exc) from None
        self._writer_class = SummaryWriter
        self.writer: Any = None

    @hookimpl
    def on_train_start(self, trainer: Any) -> None:
        self.writer = self._writer_class(log_dir=str(Path(trainer.run_dir) / TENSORBOARD_DIR))

    @hookimpl
    def on_epoch_end(self, trainer: Any, epoch: int, metrics: Mapping[str, float]) -> None:
        for key, value in metrics.items():
            if key != "epoch" and isinstance(value, int | float):
                self.writer.add_scalar(key, value, global_step=epoch)
        self.writer.flush()

    @hookimpl
    def on_train_end(self, trainer: Any, metrics: Mapping[str, float]) -> None:
        if self.writer is not None:
            self.writer.close()
