"""The ``health`` callback: the checks of :mod:`mmcore.train.health` after each epoch and
after the modality report, their warnings printed once and kept in ``health.json``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmcore.plugins.hookspecs import hookimpl
from mmcore.run.layout import HEALTH
from mmcore.train.drift_check import drift_warnings
from mmcore.train.health import HealthChecks


class HealthCallback:
    """Keeps the run's :class:`~mmcore.train.health.HealthChecks` as ``trainer.health``
    (a resumed run keeps the warnings already in ``health.json``). The loss check runs once
    an epoch is validated, so its warnings come before the epoch's checkpoint callbacks and
    log line; the dead-modality check and the drifting-modality check
    (:mod:`mmcore.train.drift_check`) read ``trainer.modality_report``, so the
    ``modality_report`` callback's ``on_train_end`` runs first (see
    :data:`~mmcore.train.callbacks.defaults.BUILTIN`)."""

    @hookimpl
    def on_train_start(self, trainer: Any) -> None:
        resumed = trainer.last_checkpoint is not None
        trainer.health = HealthChecks(trainer.run.path / HEALTH, trainer.note, resume=resumed)

    @hookimpl(tryfirst=True)
    def on_validation_end(self, trainer: Any, epoch: int, metrics: Mapping[str, float],
                          improved: bool) -> None:
        trainer.health.after_epoch(trainer)

    @hookimpl(tryfirst=True)
    def on_train_end(self, trainer: Any, metrics: Mapping[str, float]) -> None:
        trainer.health.after_report(trainer, trainer.final_results)
        trainer.health.add(drift_warnings(trainer.test_drift, trainer.modality_report))
