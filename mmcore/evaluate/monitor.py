"""The monitored metric: the figure ``train.monitor`` names, which picks a run's best epoch in
training and which the modality report and the robustness report show."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmcore.heads.targets import check_monitor


def monitored_metric(
    requested: str | None, heads: Mapping[str, Any], source: str
) -> tuple[str, bool]:
    """``(name, greater_is_better)`` of ``train.monitor`` (``requested``) checked against the
    heads' metrics (:class:`~mmcore.errors.SpecError` naming the field when it is none of
    them); by default the first head's first metric, ``loss`` for a head without metrics."""
    available = check_monitor(requested, heads, source)
    if requested is None:
        first_name, first = next(iter(heads.items()))
        requested = f"{first_name}.{first.metric_names[0]}" if first.metric_names else "loss"
    return requested, available[requested]
