"""``weighted``: a learned, presence-aware weighted sum of per-modality projections."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from mmcore.batch import Features
from mmcore.fusion import Fusion
from mmcore.fusions.common import Projection, masked_softmax, presence
from mmcore.layers import mlp


class WeightedFusion(Fusion):
    """The reference design's fusion: project, weight, sum.

    Each modality's pooled features ``x_m`` are projected to ``size``: ``z_m = W_m x_m + b_m``.
    With ``P`` the set of modalities present in a sample, ``s_m`` a learned score per modality
    (``dynamic=True``: ``s_m = v_m · z_m``, a score that depends on the sample), ``τ`` the
    ``temperature`` and ``α`` the ``smoothing``::

        w_m = (1 - α) · exp(s_m / τ) / Σ_{k∈P} exp(s_k / τ) + α / |P|     for m ∈ P
        w_m = 0                                                              for m ∉ P
        fused = Σ_{m∈P} w_m z_m           (then MLP(fused) when ``hidden`` is not empty)

    The weights of the present modalities always sum to 1, so a missing modality's share goes
    to the others. Smoothing mixes in the uniform distribution: every present modality keeps at
    least ``α/|P|`` of the weight, so it keeps receiving gradient and cannot be shut out early in
    training by one modality that happens to learn faster (``α = 1``: a plain mean, ``α = 0``:
    a pure softmax). A sample with no modality gives zeros (then ``MLP(0)``).

    Args:
        input_sizes: modality name -> feature size.
        size: the common projection size, and the output size.
        temperature: ``τ`` > 0; larger flattens the weights.
        smoothing: ``α`` in ``[0, 1]``.
        dynamic: score each sample's modalities from their features instead of one learned
            score per modality.
        hidden: hidden sizes of an optional output MLP (``size`` -> hidden... -> ``size``).
        dropout: dropout of that MLP.
    """

    def __init__(
        self,
        input_sizes: Mapping[str, int],
        size: int = 128,
        temperature: float = 1.0,
        smoothing: float = 0.1,
        dynamic: bool = False,
        hidden: Sequence[int] = (),
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_sizes, output_size=size)
        if temperature <= 0:
            raise ValueError(f"weighted fusion: temperature must be > 0, got {temperature}")
        if not 0 <= smoothing <= 1:
            raise ValueError(f"weighted fusion: smoothing must be in [0, 1], got {smoothing}")
        self.temperature = float(temperature)
        self.smoothing = float(smoothing)
        self.project = Projection(self.input_sizes, size)
        m = len(self.modalities)
        if dynamic:
            self.scorer: nn.Module | None = nn.Linear(size, 1, bias=False)
            self.scores = None
        else:
            self.scorer = None
            self.scores = nn.Parameter(torch.zeros(m))
        self.mlp = mlp(size, list(hidden), size, dropout=dropout) if hidden else nn.Identity()

    def weights(self, z: Tensor, present: Tensor) -> Tensor:
        """``[B, M]`` weights from projections ``z [B, M, size]`` and ``present [B, M]``."""
        if self.scorer is not None:
            scores = self.scorer(z).squeeze(-1)
        else:
            assert self.scores is not None  # __init__ sets one of the two
            scores = self.scores.unsqueeze(0).expand(z.shape[0], -1)
        soft = masked_softmax(scores / self.temperature, present)
        count = present.sum(dim=1, keepdim=True).clamp_min(1).to(soft.dtype)
        uniform = present.to(soft.dtype) / count
        return (1 - self.smoothing) * soft + self.smoothing * uniform

    def forward(self, features: Mapping[str, Features]) -> Tensor:
        z = self.project(features)
        w = self.weights(z, presence(features, self.modalities))
        return self.mlp((w.unsqueeze(-1) * z).sum(dim=1))
