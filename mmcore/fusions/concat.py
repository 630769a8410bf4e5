"""``concat``: early fusion. Concatenate the pooled features of every modality, then an MLP."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from mmcore.batch import Features
from mmcore.fusion import Fusion
from mmcore.fusions.common import presence
from mmcore.layers import mlp


class ConcatFusion(Fusion):
    """``MLP([pooled_1, ..., pooled_M, present_1, ..., present_M])``.

    Absent modalities contribute zeros; their presence flags are inputs too, so the MLP can
    tell "absent" from "all-zero features".
    """

    def __init__(
        self,
        input_sizes: Mapping[str, int],
        size: int = 256,
        hidden: int = 256,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(input_sizes, output_size=size)
        total = sum(self.input_sizes.values()) + len(self.input_sizes)
        self.mlp = mlp(total, [hidden], size, dropout=dropout)

    def forward(self, features: Mapping[str, Features]) -> Tensor:
        parts = [features[m].pooled() for m in self.modalities]
        if all(features[m].full for m in self.modalities):  # every row has every modality
            flags = parts[0].new_ones(len(parts[0]), len(parts))
        else:
            flags = presence(features, self.modalities).to(parts[0].dtype)
        return self.mlp(torch.cat([*parts, flags], dim=-1))

