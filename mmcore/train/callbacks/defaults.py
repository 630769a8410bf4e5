"""Which built-in callbacks a trainer turns on by itself, beside the spec's ``train.callbacks``.

They are the jobs every run does unless told not to: early stopping, the health checks, the
modality report, the plots, the model card, the summary and (without progress bars) a log
line per epoch. Each is an ordinary callback, registered by name in :mod:`mmcore.builtin`.
"""

from __future__ import annotations

from collections.abc import Iterable

from mmcore.train.callbacks.card import ModelCard
from mmcore.train.callbacks.early_stopping import EarlyStopping
from mmcore.train.callbacks.health import HealthCallback
from mmcore.train.callbacks.modality_report import ModalityReport
from mmcore.train.callbacks.plots import Plots
from mmcore.train.callbacks.summary import Summary
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
    """``(name, instance)`` of each built-in a trainer turns on, in registration order:
    all but the ones switched off (``report``, ``plots``, ``summary``; ``log``: the epoch
    line, wanted when no bars show) and those ``named`` in ``train.callbacks`` already."""
    off = {"modality_report": not report, "plots": not plots, "summary": not summary,
           "log": not log}
    named = set(named)
    return [(name, cls()) for name, cls in BUILTIN.items()
            if not off.get(name, False) and name not in named]


def every_process_callbacks(*, report: bool) -> list[tuple[str, object]]:
    """The built-ins that every process runs, not the main one alone: the modality report
    (its evaluations and a sharded model's forward passes need all processes)."""
    return [("modality_report", ModalityReport())] if report else []
