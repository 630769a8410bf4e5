"""Which built-in callbacks a trainer turns on by itself, beside the spec's ``train.callbacks``.

They are the jobs every run does unless told not to: early stopping, the health checks, the
modality report, the plots, the model card, the summary, and the progress bars or (without
them) a log line per epoch. Each is an ordinary callback, registered by name in
:mod:`mmcore.builtin`, but the bars: ``train.progress`` and the terminal turn them on.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pluggy

from mmcore.train.callbacks.card import ModelCard
from mmcore.train.callbacks.early_stopping import EarlyStopping
from mmcore.train.callbacks.health import HealthCallback
from mmcore.train.callbacks.modality_report import ModalityReport
from mmcore.train.callbacks.plots import Plots
from mmcore.train.callbacks.progress import ProgressBars
from mmcore.train.callbacks.summary import Summary
from mmcore.train.callbacks.wiring import callback_manager, silent_hooks
from mmcore.train.progress import EpochLog

#: the built-ins by their registered names. ``tryfirst`` implementations of one event are
#: called last-registered first: this order (registration order) makes the ends of a run
#: go modality report, health, plots, card, then the other callbacks, then the summary.
BUILTIN: dict[str, type] = {
    "summary": Summary,
    "early_stopping": EarlyStopping,
    "log": EpochLog,
    "card": ModelCard,
    "plots": Plots,
    "health": HealthCallback,
    "modality_report": ModalityReport,
}


def default_callbacks(named: Iterable[str], *, report: bool, plots: bool, summary: bool,
                      log: bool) -> list[tuple[str, object]]:
    """``(name, instance)`` of each built-in a trainer registers, in registration order: all
    but the ones switched off (``report``, ``plots``, ``summary``; ``log``: the epoch line,
    wanted when no bars show). One ``named`` in ``train.callbacks`` is on whatever the flags
    say, and registered here, in its place in the order; but ``log``, which has no place to
    keep, is then left to the spec's list."""
    named = set(named)
    off = {"modality_report": not report, "plots": not plots, "summary": not summary,
           "log": not log or "log" in named}
    return [(name, cls()) for name, cls in BUILTIN.items()
            if (name in named and name != "log") or not off.get(name, False)]


def every_process_callbacks(named: Iterable[str], *, report: bool) -> list[tuple[str, object]]:
    """The built-ins that every process runs, not the main one alone: the modality report
    (its evaluations and a sharded model's forward passes need all processes), when
    ``report`` or ``named`` in ``train.callbacks``."""
    return [("modality_report", ModalityReport())] if report or "modality_report" in named \
        else []


def trainer_hooks(trainer: Any, *, main: bool) -> pluggy.PluginManager:
    """The trainer's relay of events. On the main process: the spec's ``train.callbacks``
    (and plugins' trainer events), the built-ins the trainer's ``report``, ``plots``,
    ``summary``, ``show_progress`` and ``quiet`` leave on, then its ``callbacks`` objects.
    Elsewhere only :func:`every_process_callbacks` (the others would log and write again)."""
    named = list(trainer.spec.train.callbacks)
    if not main:
        hooks = silent_hooks()
        on = every_process_callbacks(named, report=trainer.report)
    else:
        hooks = callback_manager(named, trainer.registry, skip=set(BUILTIN) - {"log"})
        on = default_callbacks(named, report=trainer.report, plots=trainer.plots,
                               summary=trainer.summary,
                               log=not (trainer.show_progress or trainer.quiet))
        if trainer.show_progress:
            on.insert(0, ("progress", ProgressBars()))
        on += [(f"object:{i}", callback) for i, callback in enumerate(trainer.callbacks)]
    for name, callback in on:
        hooks.register(callback, name=f"callback:{name}")
    return hooks
