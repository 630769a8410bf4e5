"""Research fusions, used from a spec by path (``"my_research.fusions:HadamardFusion"``) or by
the name ``hadamard`` once ``my_research.plugin`` is registered as an mmcore plugin."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

import mmcore
from mmcore.fusions.common import Projection, presence


class HadamardFusion(mmcore.Fusion):
    """Multiplicative fusion: the element-wise product of the present modalities' projections.

    ``fused = Linear(Π_{m present} tanh(W_m x_m + b_m))`` (Kim et al., "Hadamard Product for
    Low-rank Bilinear Pooling", ICLR 2017, generalised to M modalities). An absent modality
    must not change the product, so it contributes the product's identity, 1; a sample with no
    modality gives ``Linear(1)``, a constant.

    Args:
        input_sizes: modality name -> feature size.
        size: size of the projections and of the output.
        dropout: dropout on the product.
    """

    def __init__(self, input_sizes: Mapping[str, int], size: int = 64, dropout: float = 0.0):
        super().__init__(input_sizes, output_size=size)
        self.project = Projection(self.input_sizes, size)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(size, size)

    def forward(self, features: Mapping[str, mmcore.Features]) -> Tensor:
        z = torch.tanh(self.project(features))  # [B, M, size]
        present = presence(features, self.modalities).unsqueeze(-1)  # [B, M, 1]
        z = torch.where(present, z, torch.ones_like(z))
        return self.out(self.dropout(z.prod(dim=1)))
