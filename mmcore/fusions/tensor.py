"""``tensor``: tensor fusion (Zadeh et al., 2017), the outer product of every modality."""

from __future__ import annotations

import math
from collections.abc import Mapping

from torch import Tensor

from mmcore.batch import Features
from mmcore.fusion import Fusion
from mmcore.fusions.common import Projection, with_one
from mmcore.layers import mlp

#: Outer products larger than this many entries per sample are refused (memory, parameters).
MAX_PRODUCT = 2**20


class TensorFusion(Fusion):
    """Tensor Fusion Network (TFN) fusion: every multiplicative interaction, explicitly.

    Zadeh, Chen, Poria, Cambria, Morency, "Tensor Fusion Network for Multimodal Sentiment
    Analysis", EMNLP 2017. Each modality's pooled features are projected to ``project``
    values, ``z_m = W_m x_m + b_m``, a constant 1 is appended, and the outer product of these
    vectors is flattened::

        t = [z_1; 1] ⊗ [z_2; 1] ⊗ ... ⊗ [z_M; 1]      (size (project + 1)^M)
        fused = MLP(t)

    The appended 1 keeps every lower-order term: ``t`` contains each ``z_m`` alone, each
    pairwise product, and so on. An absent modality's vector is ``[0, ..., 0; 1]``, so it
    contributes nothing but the constant and the other modalities' terms pass through
    unchanged; with every modality absent ``t`` is a single 1 (and zeros).

    The product grows as ``(project + 1)^M``: keep ``project`` small (the default gives 81
    values for two modalities, 729 for three), or use ``low_rank_tensor`` for many modalities.

    Args:
        input_sizes: modality name -> feature size.
        project: size each modality is projected to before the product.
        size: output size.
        hidden: hidden size of the MLP after the product.
        dropout: dropout in that MLP.
    """

    def __init__(
        self,
        input_sizes: Mapping[str, int],
        project: int = 8,
        size: int = 128,
        hidden: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(input_sizes, output_size=size)
        product = (project + 1) ** len(self.modalities)
        if product > MAX_PRODUCT:
            raise ValueError(
                f"tensor fusion: the outer product of {len(self.modalities)} modalities projected "
                f"to {project} has {product:,} entries per sample (limit {MAX_PRODUCT:,}); lower "
                f"'project' to at most {math.floor(MAX_PRODUCT ** (1 / len(self.modalities))) - 1}"
                " or use the 'low_rank_tensor' fusion"
            )
        self.project = Projection(self.input_sizes, project)
        self.mlp = mlp(product, [hidden], size, dropout=dropout)

    def forward(self, features: Mapping[str, Features]) -> Tensor:
        z = with_one(self.project(features))  # [B, M, P + 1], absent rows [0 ... 0, 1]
        t = z[:, 0]
        for i in range(1, z.shape[1]):
            t = (t.unsqueeze(-1) * z[:, i].unsqueeze(1)).flatten(1)
        return self.mlp(t)
