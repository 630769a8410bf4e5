"""The ``modality_drifts`` health check: at the end of training, a modality whose inputs on the
test split are far from the training split's (:mod:`mmcore.drift`), with what the model scores
with it and without it, and what to do about it.

Validation drawn from the training sessions cannot show a shift between sessions (a sensor
remounted, a quaternion in another reference frame); the test split, when it was recorded
later, can. The check reads the drift report the ``modality_report`` callback measured on the
test split (``trainer.test_drift``) and the modality report's "without" column on that split.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmcore.train.health import HealthWarning

MODALITY_DRIFTS = "modality_drifts"


def drift_warnings(drift: Mapping[str, Any] | None,
                   report: Mapping[str, Any] | None) -> list[HealthWarning]:
    """One warning per drifting modality of ``drift`` (a :func:`mmcore.drift.drift_report`);
    ``report`` (the modality report of the same split) gives the monitored metric with all
    modalities and with the drifting one hidden, when it has them."""
    if not drift or not drift.get("drifting"):
        return []
    monitor = (report or {}).get("monitor")
    baseline = (report or {}).get("baseline", {})
    found = []
    for name in drift["drifting"]:
        entry = drift["modalities"][name]
        figures = {"score": entry["score"], "threshold": entry["threshold"],
                   "validation": entry["validation"]}
        message = (f"modality {name!r} drifts on the {drift['split']} split: its inputs score "
                   f"{entry['score']:.2f} against the training split (threshold "
                   f"{entry['threshold']:.2f}, validation {entry['validation']:.2f})")
        without = (report or {}).get("modalities", {}).get(name, {}).get("without", {})
        if monitor and monitor in baseline and monitor in without:
            figures |= {"with": baseline[monitor], "without": without[monitor]}
            message += (f"; {monitor} is {baseline[monitor]:.3f} with it and "
                        f"{without[monitor]:.3f} with it hidden")
        suggestions = (
            "if that split was recorded differently (another session, device, mounting or "
            "reference frame), evaluate and predict with the modality hidden: mmcore evaluate "
            "RUN --hide-drifting, mmcore predict RUN --input ROWS --hide-drifting "
            "(docs/evaluation.md#input-drift)",
            "hold out whole sessions or subjects for validation (data.split.group_column) so "
            "that choosing the model sees the shift",
        )
        found.append(HealthWarning(MODALITY_DRIFTS, name, message, suggestions, None, figures))
    return found
