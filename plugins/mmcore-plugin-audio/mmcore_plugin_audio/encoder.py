"""The audio encoder: a small CNN over the (time, mel) image, then an optional LSTM over time."""

from __future__ import annotations

import torch
from torch import nn

from mmcore.batch import Features, ModalityBatch
from mmcore.encoder import Encoder
from mmcore.layers import rnn_output, run_rnn
from mmcore_plugin_audio.options import AudioOptions


class AudioEncoder(Encoder):
    """Log-mel batches ``values [B, T, n_mels]`` + ``mask [B, T]`` -> features.

    Each convolution (3x3, ReLU) is followed by max pooling of ``time_pools[i]`` along time
    and 2 along mel (ceil mode, so short clips keep at least one step). A row with ``L`` real
    frames keeps ``ceil(L / p)`` steps after pooling by ``p``; padded steps are zeroed in every
    layer, so a clip's output does not depend on how much padding its batch has. No
    normalisation layer: padded steps would bias its statistics, and the input is already
    normalised per utterance by default.

    Output: ``[B, D]`` (``pool``: mean over real steps, or the LSTM's last real state) or
    ``[B, T', D]`` with ``mask [B, T']``; ``D = lstm_hidden * dirs`` with the LSTM, else
    ``feature_size``. Absent rows are zero.
    """

    def __init__(self, options: AudioOptions) -> None:
        dirs = 2 if options.bidirectional else 1
        size = options.lstm_hidden * dirs if options.lstm else options.feature_size
        super().__init__(size, sequence=options.output == "sequence")
        self.time_pools = options.time_pools
        self.pool = options.pool
        self.convs = nn.ModuleList()
        self.pools = nn.ModuleList()
        in_channels, mels = 1, options.n_mels
        for out, factor in zip(options.conv_channels, self.time_pools, strict=True):
            self.convs.append(nn.Conv2d(in_channels, out, 3, padding=1))
            self.pools.append(nn.MaxPool2d((factor, 2), ceil_mode=True))
            in_channels, mels = out, -(-mels // 2)
        self.project = nn.Linear(in_channels * mels, options.feature_size)
        self.dropout = nn.Dropout(options.dropout)
        self.lstm = (
            nn.LSTM(options.feature_size, options.lstm_hidden, num_layers=options.lstm_layers,
                    batch_first=True, bidirectional=options.bidirectional)
            if options.lstm else None
        )

    def forward(self, batch: ModalityBatch) -> Features:
        values, mask = batch.values, batch.mask
        if values.dim() != 3:
            raise ValueError(f"expected log-mel batches [B, T, n_mels], got {tuple(values.shape)}")
        if mask is None:
            mask = torch.ones(values.shape[:2], dtype=torch.bool, device=values.device)
        mask = mask & batch.present.unsqueeze(1)
        lengths = mask.sum(dim=1)
        x = (values * mask.unsqueeze(-1).to(values.dtype)).unsqueeze(1)  # [B, 1, T, M]
        for conv, pool, factor in zip(self.convs, self.pools, self.time_pools, strict=True):
            # zero the padded steps before pooling: the convolution reaches into them from the
            # last real steps, and a pooling window across the end must only see real steps
            # (ReLU outputs are >= 0, so a zero never wins a max over a real step)
            x = pool(torch.relu(conv(x)) * mask[:, None, :, None].to(x.dtype))
            lengths = torch.div(lengths + factor - 1, factor, rounding_mode="floor")
            mask = torch.arange(x.shape[2], device=x.device).unsqueeze(0) < lengths.unsqueeze(1)
        steps = x.permute(0, 2, 1, 3).flatten(2)  # [B, T', C * M']
        steps = self.dropout(torch.relu(self.project(steps)))
        if self.lstm is None:
            return self.features(steps * mask.unsqueeze(-1).to(steps.dtype), mask, batch)
        outputs, last = run_rnn(self.lstm, steps, mask)
        return self.features(*rnn_output(outputs, last, mask, self.pool, self.sequence), batch)
