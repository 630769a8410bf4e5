"""The ``early_stopping`` callback: training ends once ``train.early_stopping`` epochs in a row
have not improved the monitored metric."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmcore.plugins.hookspecs import hookimpl


class EarlyStopping:
    """Sets ``trainer.stopped_early`` when the epochs since the best one
    (``trainer.bad_epochs``) reach ``train.early_stopping`` (``None``: never). It decides at
    ``on_validation_end``, before the epoch's checkpoint, so a resumed run knows it stopped;
    it says so after every other callback's ``on_epoch_end`` (after the epoch's log line)."""

    @hookimpl
    def on_validation_end(self, trainer: Any, epoch: int, metrics: Mapping[str, float],
                          improved: bool) -> None:
        patience = trainer.spec.train.early_stopping
        if patience is not None and trainer.bad_epochs >= patience:
            trainer.stopped_early = True

    @hookimpl(trylast=True)
    def on_epoch_end(self, trainer: Any, epoch: int, metrics: Mapping[str, float]) -> None:
        if trainer.stopped_early:
            trainer.note(f"early stopping after epoch {epoch}: {trainer.monitor.name} has not "
                         f"improved for {trainer.bad_epochs} epochs (best: epoch "
                         f"{trainer.best_epoch})")
