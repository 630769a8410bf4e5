"""The ``summary`` callback: the run's summary as a note at the very end."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmcore.evaluate.ablation import format_report
from mmcore.plugins.hookspecs import hookimpl
from mmcore.train.progress import fmt
from mmcore.train.settings import TEST, VALIDATION


class Summary:
    """Notes where the run is, :func:`summary` of ``trainer.final_metrics`` and the modality
    report's table (when there is one), after every other callback (``trylast``)."""

    @hookimpl(trylast=True)
    def on_train_end(self, trainer: Any, metrics: Mapping[str, float]) -> None:
        lines = [f"run saved to {trainer.run_dir}", summary(trainer.final_metrics)]
        if trainer.modality_report is not None:
            lines += ["", format_report(trainer.modality_report)]
        trainer.note("\n".join(lines))


def summary(final: Mapping[str, Any]) -> str:
    """A few readable lines of :meth:`~mmcore.train.Trainer.fit`'s result."""
    lines = [f"best epoch: {final.get('best_epoch')} ({final.get('monitor')} = "
             f"{fmt(final.get('best_value'))})"]
    for split in (VALIDATION, TEST):
        if split in final:
            figures = ", ".join(f"{k} {fmt(v)}" for k, v in final[split].items())
            lines.append(f"{split}: {figures}")
    return "\n".join(lines)
