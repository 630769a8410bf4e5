"""``film``: feature-wise linear modulation (Perez et al., 2018) of modalities by another."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from mmcore.batch import Features, masked_mean
from mmcore.fusion import Fusion
from mmcore.fusions.common import presence, step_mask, zero_absent


class FiLMFusion(Fusion):
    """One modality (the condition) scales and shifts the features of the others.

    Perez, Strub, de Vries, Dumoulin, Courville, "FiLM: Visual Reasoning with a General
    Conditioning Layer", AAAI 2018. From the conditioning modality's pooled features ``c`` a
    linear layer per modulated modality gives ``γ_m = 1 + Δγ_m(c)`` and ``β_m(c)``; each other
    modality ``m`` is projected (``z_m = W_m x_m + b_m``, at every step of a sequence) and
    modulated::

        h_m   = ReLU(γ_m ⊙ z_m + β_m)          (then masked-mean pooled over real steps)
        fused = mean of h_m over the present modulated modalities
              [; ReLU(W_c c + b_c)]             (with include_condition)

    An absent condition leaves the others unmodulated (``γ = 1``, ``β = 0``). With
    ``include_condition`` the condition's own projection is appended (output size
    ``2 * size``), so a sample that has only the condition still carries information; without
    it such a sample gives zeros. A sample with no modality gives zeros.

    Args:
        input_sizes: modality name -> feature size; at least two modalities.
        condition: the conditioning modality (default: the last in sorted order).
        size: projection size of the modulated modalities.
        include_condition: append the condition's own projection to the output.
    """

    def __init__(
        self,
        input_sizes: Mapping[str, int],
        condition: str | None = None,
        size: int = 128,
        include_condition: bool = True,
    ) -> None:
        super().__init__(input_sizes, output_size=2 * size if include_condition else size)
        if len(self.modalities) < 2:
            raise ValueError("film fusion needs at least two modalities: one conditions the others")
        if condition is None:
            condition = self.modalities[-1]
        if condition not in self.input_sizes:
            raise ValueError(
                f"film fusion: condition {condition!r} is not one of the modalities "
                f"{self.modalities}"
            )
        self.condition = condition
        self.others = [m for m in self.modalities if m != condition]
        cond_size = self.input_sizes[condition]
        self.project = nn.ModuleDict({m: nn.Linear(self.input_sizes[m], size) for m in self.others})
        self.film = nn.ModuleDict({m: nn.Linear(cond_size, 2 * size) for m in self.others})
        self.condition_project = nn.Linear(cond_size, size) if include_condition else None

    def forward(self, features: Mapping[str, Features]) -> Tensor:
        cond = features[self.condition]
        c = cond.pooled()
        outs = []
        for m in self.others:
            f = features[m]
            delta_gamma, beta = zero_absent(self.film[m](c), cond.present).chunk(2, dim=-1)
            z = self.project[m](f.values)
            if f.is_sequence:
                h = torch.relu((1 + delta_gamma.unsqueeze(1)) * z + beta.unsqueeze(1))
                outs.append(masked_mean(zero_absent(h, step_mask(f)), step_mask(f)))
            else:
                outs.append(zero_absent(torch.relu((1 + delta_gamma) * z + beta), f.present))
        present = presence(features, self.others).to(outs[0].dtype)  # [B, M-1]
        stacked = torch.stack(outs, dim=1)
        fused = (stacked * present.unsqueeze(-1)).sum(1) / present.sum(1, keepdim=True).clamp_min(1)
        if self.condition_project is None:
            return fused
        own = zero_absent(torch.relu(self.condition_project(c)), cond.present)
        return torch.cat([fused, own], dim=-1)
