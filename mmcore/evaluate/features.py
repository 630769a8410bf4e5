"""Statistics of the encoders' pooled features over a split's rows: what input drift is
measured on (:mod:`mmcore.drift`).

:class:`FeatureStatistics` keeps running sums per modality; :meth:`~FeatureStatistics.recording`
fills them from the encoders' forward passes while something else runs the model, so that an
evaluation measures them in its own pass (``evaluate_model(..., statistics=True)``) instead of
running the encoders over the split again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from torch import Tensor, nn


class FeatureStatistics:
    """Per modality: the count, sum and sum of squares of its encoder's pooled features over
    the rows that have it (float64, CPU)."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = list(names)
        self.sums: dict[str, Tensor] = {}
        self.squares: dict[str, Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, name: str, features: Any) -> None:
        """Count a batch's :class:`~mmcore.batch.Features` of modality ``name`` (its rows
        without the modality left out)."""
        pooled = features.pooled().detach()[features.present].double().cpu()
        if not len(pooled):
            return
        self.sums[name] = self.sums.get(name, 0) + pooled.sum(dim=0)
        self.squares[name] = self.squares.get(name, 0) + (pooled ** 2).sum(dim=0)
        self.counts[name] = self.counts.get(name, 0) + len(pooled)

    def merge(self, others: Iterable[FeatureStatistics]) -> FeatureStatistics:
        """These sums plus ``others``' (each process's share of a split), as a new object."""
        out = FeatureStatistics(self.names)
        for part in [self, *others]:
            for name, n in part.counts.items():
                out.sums[name] = out.sums.get(name, 0) + part.sums[name]
                out.squares[name] = out.squares.get(name, 0) + part.squares[name]
                out.counts[name] = out.counts.get(name, 0) + n
        return out

    def result(self) -> dict[str, dict[str, Any]]:
        """Per modality: ``{"rows", "mean", "std"}`` (``mean``/``std`` lists of floats,
        absent for a modality no row has)."""
        out: dict[str, dict[str, Any]] = {}
        for name in self.names:
            n = self.counts.get(name, 0)
            if not n:
                out[name] = {"rows": 0}
                continue
            mean = self.sums[name] / n
            var = (self.squares[name] / n - mean ** 2).clamp_min(0)
            out[name] = {"rows": n, "mean": mean.tolist(), "std": var.sqrt().tolist()}
        return out

    @contextlib.contextmanager
    def recording(self, encoders: Mapping[str, nn.Module]) -> Iterator[FeatureStatistics]:
        """Count every output of ``encoders`` (by modality name) while the block runs."""
        def hook(name: str):
            return lambda module, args, output: self.add(name, output)

        handles = [encoder.register_forward_hook(hook(name))
                   for name, encoder in encoders.items()]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()
