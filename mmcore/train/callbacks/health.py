"""The ``health`` callback: the checks of :mod:`mmcore.train.health` after each epoch and
after the modality report, their warnings printed once and kept in ``health.json``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmcore.plugins.hookspecs import hookimpl
from mmcore.run.layout import HEALTH
from mmcore.train.health import HealthChecks


class HealthCallback:
    """Keeps the run's :class:`~mmcore.train.health.HealthChecks` as ``trainer.health``
    (a resumed run keeps the warnings already in ``health.json``). Its checks run before the
    other callbacks' (``tryfirst``), so a warning reaches trackers and logs with its epoch;
    the dead-modality check reads ``trainer.modality_report``, so the ``modality_report``
    callback's ``on_train_end`` must run first (the trainer registers them so)."""

    @hookimpl
    def on_train_start(self, trainer: Any) -> None:
        resumed = trainer.last_checkpoint is not None
        trainer.health = HealthChecks(trainer.run.path / HEALTH, trainer.note, resume=resumed)

    @hookimpl(tryfirst=True)
    def on_epoch_end(self, trainer: Any, epoch: int, metrics: Mapping[str, float]) -> None:
        trainer.health.after_epoch(trainer)

    @hookimpl(tryfirst=True)
    def on_train_end(self, trainer: Any, metrics: Mapping[str, float]) -> None:
        trainer.health.after_report(trainer, trainer.final_results)
