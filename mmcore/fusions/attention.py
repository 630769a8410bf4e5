"""``attention``: a transformer over the tokens of every modality, read out at a CLS token."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from mmcore.batch import Features
from mmcore.fusion import Fusion
from mmcore.fusions.common import Projection, sinusoidal_positions, step_mask, zero_absent


class AttentionFusion(Fusion):
    """Cross-modal self-attention: every token attends to every other modality's tokens.

    Tokens: each step of a sequence modality (``[B, T, D]``), or a pooled modality's vector as
    one token, projected to ``d_model`` by a ``Linear`` per modality. Each token gets its
    modality's learned embedding and, for sequences, a sine/cosine code of its step index
    (``positional``). A learned CLS token goes first; after ``layers``
    ``nn.TransformerEncoder`` layers (pre-norm) its output, layer-normed, is the fused vector.

    Padded steps and every token of an absent modality are masked out of attention with the
    key padding mask built from ``Features.mask`` and ``Features.present``; the CLS token is
    never masked, so a sample with no modality still gets a finite output (from the CLS
    token alone).

    Args:
        input_sizes: modality name -> feature size.
        d_model: token size and output size.
        heads: attention heads (must divide ``d_model``).
        layers: transformer encoder layers.
        feedforward: hidden size of each layer's feed-forward block.
        dropout: dropout inside the layers.
        positional: add step-position codes to sequence tokens.
    """

    def __init__(
        self,
        input_sizes: Mapping[str, int],
        d_model: int = 128,
        heads: int = 4,
        layers: int = 2,
        feedforward: int = 256,
        dropout: float = 0.1,
        positional: bool = True,
    ) -> None:
        super().__init__(input_sizes, output_size=d_model)
        if d_model % heads:
            raise ValueError(f"attention fusion: heads ({heads}) must divide d_model ({d_model})")
        self.positional = positional
        self.project = Projection(self.input_sizes, d_model)
        self.modality_embedding = nn.Parameter(torch.randn(len(self.modalities), d_model) * 0.02)
        self.cls = nn.Parameter(torch.randn(1, 1, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model, heads, feedforward, dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)

    def tokens(self, features: Mapping[str, Features]) -> tuple[Tensor, Tensor]:
        """``(tokens [B, 1 + N, d_model], keep [B, 1 + N])``: CLS first, then each modality's."""
        parts: list[Tensor] = []
        keeps: list[Tensor] = []
        for i, m in enumerate(self.modalities):
            f = features[m]
            if f.is_sequence:
                keep = step_mask(f)
                x = self.project.project(m, f)
                if self.positional:
                    x = x + sinusoidal_positions(x.shape[1], x.shape[2], x.device).to(x.dtype)
            else:
                keep = f.present.bool().unsqueeze(1)
                x = self.project.project(m, f).unsqueeze(1)
            parts.append(zero_absent(x + self.modality_embedding[i], keep))
            keeps.append(keep)
        b = parts[0].shape[0]
        cls = self.cls.expand(b, -1, -1).to(parts[0].dtype)
        keep_cls = torch.ones(b, 1, dtype=torch.bool, device=cls.device)
        return torch.cat([cls, *parts], dim=1), torch.cat([keep_cls, *keeps], dim=1)

    def forward(self, features: Mapping[str, Features]) -> Tensor:
        tokens, keep = self.tokens(features)
        out = self.encoder(tokens, src_key_padding_mask=~keep)
        return self.norm(out[:, 0])
