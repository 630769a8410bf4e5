"""``late``: one representation (and so one head output) per modality, combined at the end."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from mmcore.batch import Features
from mmcore.fusion import PerModalityFusion
from mmcore.fusions.common import masked_softmax, presence, zero_absent
from mmcore.layers import mlp

MODES = ("mean", "learned")


class LateFusion(PerModalityFusion):
    """Late fusion: each modality is predicted from on its own, then the predictions merge.

    ``forward`` returns ``{modality: [B, size]}``, a per-modality MLP of its pooled features;
    the model (:class:`~mmcore.model.LateFusionModel`) runs every head on each of them and
    calls :meth:`combine` to merge the head outputs (e.g. logits) over the modalities present
    in each sample::

        mode "mean":    out = (1/|P|) Σ_{m∈P} y_m
        mode "learned": out = Σ_{m∈P} softmax_{P}(s)_m · y_m      (s: a learned score per modality)

    A sample with no modality gives zeros. Because each prediction sees one modality only and
    they are merely added, late fusion **cannot model interactions between modalities**: a
    label that depends on two modalities jointly (e.g. their XOR) is out of its reach (at most
    75% accuracy on balanced XOR, whatever the heads). It is robust to missing modalities and
    a good baseline.

    Args:
        input_sizes: modality name -> feature size.
        size: size of each modality's representation (the heads' input size).
        hidden: hidden size of each modality's MLP.
        dropout: dropout in those MLPs.
        mode: ``"mean"`` or ``"learned"``.
    """

    def __init__(
        self,
        input_sizes: Mapping[str, int],
        size: int = 128,
        hidden: int = 128,
        dropout: float = 0.1,
        mode: str = "mean",
    ) -> None:
        super().__init__(input_sizes, output_size=size)
        if mode not in MODES:
            raise ValueError(f"late fusion: mode must be one of {list(MODES)}, got {mode!r}")
        self.mode = mode
        self.mlps = nn.ModuleDict(
            {m: mlp(d, [hidden], size, dropout=dropout) for m, d in self.input_sizes.items()}
        )
        self.scores = nn.Parameter(torch.zeros(len(self.modalities))) if mode == "learned" else None

    def forward(  # type: ignore[override]  # PerModalityFusion's: one tensor per modality
        self, features: Mapping[str, Features]
    ) -> dict[str, Tensor]:
        return {
            m: zero_absent(self.mlps[m](features[m].pooled()), features[m].present)
            for m in self.modalities
        }

    def combine(
        self, head_outputs: Mapping[str, Tensor], features: Mapping[str, Features]
    ) -> Tensor:
        """Merge one head's per-modality outputs (each ``[B, ...]``) into one ``[B, ...]``."""
        present = presence(features, self.modalities)  # [B, M]
        stacked = torch.stack([head_outputs[m] for m in self.modalities], dim=1)
        if self.scores is not None:
            weights = masked_softmax(self.scores.expand(present.shape), present)
        else:
            weights = present.to(stacked.dtype) / present.sum(1, keepdim=True).clamp_min(1)
        weights = weights.to(stacked.dtype).view(*weights.shape, *([1] * (stacked.dim() - 2)))
        # where, not a product alone: an absent modality's head output must not leak as NaN
        stacked = zero_absent(stacked, present)
        return (weights * stacked).sum(dim=1)
