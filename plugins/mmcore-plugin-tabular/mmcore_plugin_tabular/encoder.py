"""Encoders of a table row: an MLP over numbers and embeddings, or a feature-tokenizer
transformer (one token per column, Gorishniy et al. 2021, "Revisiting Deep Learning Models for
Tabular Data")."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmcore.batch import Features, ModalityBatch
from mmcore.encoder import Encoder
from mmcore.layers import mlp
from mmcore_plugin_tabular.options import TabularOptions


class TabularEncoder(Encoder):
    """``values [B, F]`` laid out as :mod:`mmcore_plugin_tabular.features` writes them
    (``numeric`` scaled numbers, as many missing flags when ``indicators``, then one category
    id per entry of ``cardinalities``) -> features of size ``options.size``."""

    def __init__(self, numeric: int, indicators: bool, cardinalities: list[int],
                 options: TabularOptions) -> None:
        transformer = options.encoder == "ft_transformer"
        super().__init__(options.size, sequence=options.output == "sequence")
        self.numeric, self.indicators = numeric, indicators
        self.transformer = transformer
        width = options.d_token if transformer else options.embedding_size
        self.embeddings = nn.ModuleList(nn.Embedding(n, width) for n in cardinalities)
        if transformer:
            d = options.d_token
            has = numeric > 0  # a table of categories only has no number tokens
            self.num_weight = nn.Parameter(torch.randn(numeric, d) * d ** -0.5) if has else None
            self.num_bias = nn.Parameter(torch.zeros(numeric, d)) if has else None
            self.missing = nn.Parameter(torch.zeros(numeric, d)) if has and indicators else None
            self.cls = nn.Parameter(torch.randn(1, 1, d) * d ** -0.5)
            layer = nn.TransformerEncoderLayer(d, options.heads, 2 * d, options.dropout,
                                               batch_first=True, norm_first=True)
            self.blocks = nn.TransformerEncoder(layer, options.layers,
                                                enable_nested_tensor=False)
            self.norm = nn.LayerNorm(d)
            self.proj = nn.Linear(d, options.size)
        else:
            inputs = numeric * (2 if indicators else 1) + width * len(cardinalities)
            self.net = mlp(inputs, options.hidden, options.size, dropout=options.dropout)

    def _split(self, values: Tensor) -> tuple[Tensor, Tensor | None, Tensor]:
        n = self.numeric
        numbers = values[:, :n]
        flags = values[:, n:2 * n] if self.indicators else None
        ids = values[:, n * (2 if self.indicators else 1):].long()
        return numbers, flags, ids

    def forward(self, batch: ModalityBatch) -> Features:
        numbers, flags, ids = self._split(batch.values)
        embedded = [emb(ids[:, j]) for j, emb in enumerate(self.embeddings)]
        if not self.transformer:
            parts = [numbers] + ([flags] if flags is not None else []) + embedded
            return self.features(self.net(torch.cat(parts, dim=-1)), None, batch)
        parts = [self.cls.expand(numbers.shape[0], -1, -1)]  # not len(): export keeps it symbolic
        if self.num_weight is not None and self.num_bias is not None:
            tokens = numbers.unsqueeze(-1) * self.num_weight + self.num_bias  # [B, n, d]
            if self.missing is not None and flags is not None:
                tokens = tokens + flags.unsqueeze(-1) * self.missing
            parts.append(tokens)
        tokens = torch.cat([*parts, *(e.unsqueeze(1) for e in embedded)], dim=1)
        out = self.norm(self.blocks(tokens))
        if self.sequence:  # one token per column, every one real
            per_column = self.proj(out[:, 1:])
            mask = torch.ones(per_column.shape[:2], dtype=torch.bool, device=out.device)
            return self.features(per_column, mask, batch)
        return self.features(self.proj(out[:, 0]), None, batch)
