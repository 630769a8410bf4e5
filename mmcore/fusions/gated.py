"""``gated``: gated multimodal units (Arevalo et al., 2017) for any number of modalities."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from mmcore.batch import Features
from mmcore.fusion import Fusion
from mmcore.fusions.common import Projection, masked_softmax, presence


class GatedFusion(Fusion):
    """A gated multimodal unit (GMU): per-feature gates choose how much of each modality to use.

    Arevalo, Solorio, Montes-y-Gómez, González, "Gated Multimodal Units for Information
    Fusion", ICLR workshop 2017. For two modalities the paper computes
    ``h = z ⊙ tanh(W_a x_a) + (1 - z) ⊙ tanh(W_b x_b)`` with ``z = σ(W_z [x_a; x_b])``. With ``M``
    modalities the gates become a softmax over the modalities, separately for each of the
    ``size`` output features::

        h_m = tanh(W_m x_m)                                   (x_m: pooled features)
        g   = W_g [x_1; ...; x_M; present_1; ...; present_M]   reshaped to [M, size]
        z_m = softmax over the present modalities of g (per feature)
        fused = Σ_m z_m ⊙ h_m

    (for ``M = 2`` the softmax equals ``σ(g_a - g_b)``, the paper's single gate.) Because the
    gates depend on every modality, one modality's value decides how another is read: the unit
    models interactions. An absent modality gets gate 0, so the present ones share all of it;
    a sample with no modality gives zeros.

    Args:
        input_sizes: modality name -> feature size.
        size: the output size (and the size of each ``h_m``).
        dropout: dropout on the fused output.
    """

    def __init__(
        self, input_sizes: Mapping[str, int], size: int = 128, dropout: float = 0.0
    ) -> None:
        super().__init__(input_sizes, output_size=size)
        self.project = Projection(self.input_sizes, size)
        m = len(self.modalities)
        self.gate = nn.Linear(sum(self.input_sizes.values()) + m, m * size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: Mapping[str, Features]) -> Tensor:
        present = presence(features, self.modalities)  # [B, M]
        h = torch.tanh(self.project(features))  # [B, M, S]; absent rows are tanh(0) = 0
        pooled = [features[m].pooled() for m in self.modalities]
        g = self.gate(torch.cat([*pooled, present.to(h.dtype)], dim=-1)).view_as(h)
        z = masked_softmax(g, present.unsqueeze(-1), dim=1)
        return self.dropout((z * h).sum(dim=1))
