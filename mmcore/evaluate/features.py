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

import torch
from torch import Tensor, nn


class FeatureStatistics:
    """Per modality: the count, sum and sum of squares of its encoder's pooled features over
    the rows that have it (float64, kept on the features' device until :meth:`result`, so
    counting a batch waits for nothing; on MPS, which has no float64, on the CPU)."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = list(names)
        self.sums: dict[str, Tensor] = {}
        self.squares: dict[str, Tensor] = {}
        self.counts: dict[str, Tensor] = {}

    def add(self, name: str, features: Any) -> None:
        """Count a batch's :class:`~mmcore.batch.Features` of modality ``name`` (its rows
        without the modality left out, whatever their values hold)."""
        pooled = features.pooled().detach()
        if pooled.device.type == "mps":  # no float64 there
            pooled = pooled.cpu()
        present = features.present.to(pooled.device).bool()
        kept = torch.where(present.unsqueeze(-1), pooled.double(), 0.0)
        for store, value in ((self.sums, kept.sum(dim=0)),
                             (self.squares, (kept * kept).sum(dim=0)),
                             (self.counts, present.sum())):
            store[name] = store[name] + value if name in store else value

    def cpu(self) -> FeatureStatistics:
        """A copy on the CPU (what processes exchange)."""
        out = FeatureStatistics(self.names)
        for mine, theirs in ((self.sums, out.sums), (self.squares, out.squares),
                             (self.counts, out.counts)):
            theirs.update({name: value.cpu() for name, value in mine.items()})
        return out

    def merge(self, others: Iterable[FeatureStatistics]) -> FeatureStatistics:
        """These sums plus ``others``' (each process's share of a split), as a new object."""
        out = FeatureStatistics(self.names)
        for part in [self, *others]:
            for mine, theirs in ((part.sums, out.sums), (part.squares, out.squares),
                                 (part.counts, out.counts)):
                for name, value in mine.items():
                    theirs[name] = theirs[name] + value if name in theirs else value
        return out

    def result(self) -> dict[str, dict[str, Any]]:
        """Per modality: ``{"rows", "mean", "std"}`` (``mean``/``std`` lists of floats,
        absent for a modality no row has)."""
        out: dict[str, dict[str, Any]] = {}
        for name in self.names:
            n = int(self.counts[name].item()) if name in self.counts else 0
            if not n:
                out[name] = {"rows": 0}
                continue
            mean = self.sums[name].cpu() / n
            var = (self.squares[name].cpu() / n - mean ** 2).clamp_min(0)
            out[name] = {"rows": n, "mean": mean.tolist(), "std": var.sqrt().tolist()}
        return out

    @contextlib.contextmanager
    def recording(self, encoders: nn.ModuleDict | Mapping[str, nn.Module],
                  ) -> Iterator[FeatureStatistics]:
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
