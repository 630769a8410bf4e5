"""The ``plots`` callback: training curves and confusion matrices as PNGs in the run folder
(see :mod:`mmcore.train.plots`; needs matplotlib)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmcore.plugins.hookspecs import hookimpl


class Plots:
    """Draws ``training_curves.png`` from ``trainer.history`` and a confusion matrix per
    single-label head from ``trainer.final_results``, before the trackers upload the run
    (``tryfirst``); without matplotlib it says so in a note."""

    @hookimpl(tryfirst=True)
    def on_train_end(self, trainer: Any, metrics: Mapping[str, float]) -> None:
        from mmcore.train.plots import make_plots

        note = make_plots(trainer.run.path, trainer.history, trainer.model,
                          trainer.final_results)
        if note:
            trainer.note(note)
