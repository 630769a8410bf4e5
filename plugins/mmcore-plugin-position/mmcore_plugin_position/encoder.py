"""``PositionEncoder``: 1-D convolutions over time, then an LSTM."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from mmcore.batch import Features, ModalityBatch
from mmcore.encoder import Encoder
from mmcore.layers import dropout_layer, rnn_output, run_rnn


class PositionEncoder(Encoder):
    """Coordinate frames ``[B, T, K, D]`` (or ``[B, T, F]``) with mask ``[B, T]`` -> features.

    Each frame is flattened to ``F = K * D`` values. 1-D convolutions over time (``same``
    padding, ReLU) turn them into per-step features — the first mixes the raw coordinates of
    neighbouring frames, the later ones build on those — then an LSTM runs over the real steps
    only (packed by the mask). Padded steps are zeroed after every convolution, so a sample's
    features do not depend on how much padding its batch has.

    Output: ``[B, hidden_size]`` (``pool="mean"``: masked mean of the LSTM outputs;
    ``"last"``: the state at each row's last real step) or, with ``output="sequence"``,
    ``[B, T, hidden_size]`` with the input mask. Rows not ``present`` are zeros.
    """

    def __init__(
        self,
        input_size: int,
        conv_channels: Sequence[int] = (64, 64),
        kernel_size: int = 3,
        hidden_size: int = 64,
        num_layers: int = 1,
        dropout: float = 0.0,
        pool: Literal["mean", "last"] = "mean",
        output: Literal["pooled", "sequence"] = "pooled",
    ) -> None:
        super().__init__(hidden_size, sequence=(output == "sequence"))
        self.input_size = int(input_size)
        self.pool = pool
        sizes = [self.input_size, *conv_channels]
        self.convs = nn.ModuleList(
            nn.Conv1d(i, o, kernel_size, padding=kernel_size // 2)
            for i, o in zip(sizes[:-1], sizes[1:], strict=True)
        )
        self.dropout = dropout_layer(dropout)
        self.lstm = nn.LSTM(
            sizes[-1],
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )

    def forward(self, batch: ModalityBatch) -> Features:
        x = batch.values.flatten(2)
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"position encoder expects frames of {self.input_size} values, got "
                f"{tuple(batch.values.shape[2:])} ({x.shape[-1]} values)"
            )
        # padded steps are zeroed after every convolution; a batch with nothing absent or
        # padded skips that (and the LSTM needs no mask)
        mask = None if batch.is_full() else batch.mask
        if mask is None and not batch.is_full():
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        keep = None if mask is None else mask.unsqueeze(1).to(x.dtype)
        h = x.transpose(1, 2)  # [B, F, T]: Conv1d wants channels first
        if keep is not None:
            h = h * keep
        for conv in self.convs:
            h = self.dropout(torch.relu(conv(h)))
            if keep is not None:
                h = h * keep
        outputs, last = run_rnn(self.lstm, h.transpose(1, 2), mask)
        out, out_mask = rnn_output(outputs, last, mask, self.pool, self.sequence)
        return self.features(out, out_mask, batch)
