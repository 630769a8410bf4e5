"""``low_rank_tensor``: low-rank multimodal fusion (Liu et al., 2018)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from mmcore.batch import Features
from mmcore.fusion import Fusion
from mmcore.fusions.common import with_one


class LowRankTensorFusion(Fusion):
    """Low-rank Multimodal Fusion (LMF): tensor fusion with the weight tensor factorised.

    Liu, Shen, Lakshminarasimhan, Liang, Zadeh, Morency, "Efficient Low-rank Multimodal Fusion
    with Modality-Specific Factors", ACL 2018. Tensor fusion applies a weight tensor ``W`` to
    ``[x_1; 1] ⊗ ... ⊗ [x_M; 1]``; LMF writes ``W`` as a sum of ``rank`` products of
    per-modality factors ``W_m^(i)`` (shape ``(D_m + 1) x size``), so the product is never
    formed::

        fused = Σ_{i=1..rank} λ_i · Π_m (W_m^(i)ᵀ [x_m; 1]) + b      (Π: element-wise)

    Cost is linear in the number of modalities. ``x_m`` are the pooled features; an absent
    modality's vector is ``[0, ..., 0; 1]``, so its factor contributes only its constant row
    (as in tensor fusion, it adds nothing that depends on it).

    Args:
        input_sizes: modality name -> feature size.
        rank: number of rank-one terms.
        size: output size.
    """

    def __init__(self, input_sizes: Mapping[str, int], rank: int = 4, size: int = 128) -> None:
        super().__init__(input_sizes, output_size=size)
        self.rank = int(rank)
        self.factors = nn.ParameterDict(
            {
                m: nn.Parameter(nn.init.xavier_normal_(torch.empty(rank, d + 1, size)))
                for m, d in self.input_sizes.items()
            }
        )
        self.rank_weights = nn.Parameter(nn.init.xavier_normal_(torch.empty(1, rank)).squeeze(0))
        self.bias = nn.Parameter(torch.zeros(size))

    def forward(self, features: Mapping[str, Features]) -> Tensor:
        product: Tensor | None = None
        for m in self.modalities:
            x = with_one(features[m].pooled())  # absent rows: [0 ... 0, 1]
            term = torch.einsum("bd,rds->brs", x, self.factors[m])
            product = term if product is None else product * term
        assert product is not None
        return torch.einsum("r,brs->bs", self.rank_weights, product) + self.bias
