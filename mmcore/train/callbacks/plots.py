"""The ``plots`` callback: the run's pictures drawn at the end of ``fit()`` (see
:mod:`mmcore.train.plots`; needs matplotlib)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmcore.plugins.hookspecs import hookimpl


class Plots:
    """Draws ``training_curves.png`` and a confusion matrix per single-label head from what
    the run folder holds by ``on_train_end`` (``metrics.jsonl``, ``confusion.json``), before
    the trackers upload the run (``tryfirst``): what ``mmcore plots RUN`` draws later. Without
    matplotlib it says so in a note."""

    @hookimpl(tryfirst=True)
    def on_train_end(self, trainer: Any, metrics: Mapping[str, float]) -> None:
        from mmcore.train.plots import PlotsUnavailable, draw_run

        try:
            draw_run(trainer.run.path)
        except PlotsUnavailable as exc:
            trainer.note(str(exc))
