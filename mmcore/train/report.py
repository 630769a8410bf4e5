"""The modality report: how much each modality contributes to a trained model.

For every modality the split is evaluated twice more: with that modality hidden from every
row (``present=False``, as if the data lacked it) and with it alone kept. A large drop
"without" means the model relies on the modality; a good score "only" means it carries the
task on its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mmcore.batch import ModalityBatch
from mmcore.train.evaluation import SplitResult
from mmcore.train.masking import hide_all

Transform = Callable[[dict[str, ModalityBatch]], dict[str, ModalityBatch]]


def modality_report(
    evaluate: Callable[[Transform | None], SplitResult],
    modalities: Sequence[str],
    monitor: str,
    split: str,
) -> dict[str, Any]:
    """Run ``evaluate`` (which evaluates the split with an optional input transform) once as
    is and twice per modality.

    Returns ``{"split", "monitor", "baseline": metrics, "modalities": {name: {"without":
    metrics, "only": metrics}}}``; metrics use the names of :mod:`mmcore.train.evaluation`.
    """
    names = sorted(modalities)
    baseline = evaluate(None).metrics
    per: dict[str, Any] = {}
    for name in names:
        without = evaluate(lambda inputs, n=name: hide_all(inputs, {n})).metrics
        others = set(names) - {name}
        only = (
            evaluate(lambda inputs, o=others: hide_all(inputs, o)).metrics if others else baseline
        )
        per[name] = {"without": without, "only": only}
    return {"split": split, "monitor": monitor, "baseline": baseline, "modalities": per}


def _cell(value: Any) -> str:
    if not isinstance(value, int | float) or math.isnan(value):
        return "-"
    return f"{value:.4f}"


def format_report(report: Mapping[str, Any]) -> str:
    """A plain-text table of the monitored metric: all modalities, each one hidden (with
    the change from all), and each one alone."""
    monitor = report["monitor"]
    base = report["baseline"].get(monitor, float("nan"))
    header = ["modality", f"without ({monitor})", "change", f"only ({monitor})"]
    rows = [["(all)", _cell(base), "", _cell(base)]]
    for name, entry in report["modalities"].items():
        without = entry["without"].get(monitor, float("nan"))
        change = without - base
        rows.append([name, _cell(without), f"{change:+.4f}" if math.isfinite(change) else "-",
                     _cell(entry["only"].get(monitor, float("nan")))])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    table = [header, ["-" * w for w in widths], *rows]
    lines = [f"modality report ({report['split']} split)"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]
    return "\n".join(lines)
