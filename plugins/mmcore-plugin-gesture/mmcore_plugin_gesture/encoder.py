"""``GestureEncoder``: an LSTM over time, then a linear layer."""

from __future__ import annotations

from typing import Literal

from torch import nn

from mmcore.batch import Features, ModalityBatch
from mmcore.encoder import Encoder
from mmcore.layers import dropout_layer, rnn_output, run_rnn


class GestureEncoder(Encoder):
    """Sequences ``[B, T, C]`` with mask ``[B, T]`` -> features.

    An LSTM (``num_layers``, ``hidden_size``, optionally bidirectional) runs over the real
    steps only (packed by the mask); a linear layer maps its output to ``output_size``.

    Output: ``[B, output_size]`` (``pool="last"``: from the state at each row's last real
    step, both directions concatenated; ``"mean"``: the masked mean over steps) or, with
    ``output="sequence"``, ``[B, T, output_size]`` with the input mask and zeros at padded
    steps. Rows not ``present`` are zeros.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        output_size: int = 64,
        pool: Literal["mean", "last"] = "last",
        output: Literal["pooled", "sequence"] = "pooled",
    ) -> None:
        super().__init__(output_size, sequence=(output == "sequence"))
        self.input_size = int(input_size)
        self.pool = pool
        self.lstm = nn.LSTM(
            self.input_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.dropout = dropout_layer(dropout)
        self.proj = nn.Linear(hidden_size * (2 if bidirectional else 1), output_size)

    def forward(self, batch: ModalityBatch) -> Features:
        x = batch.values
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(
                f"gesture encoder expects [B, T, {self.input_size}], got {tuple(x.shape)}"
            )
        mask = None if batch.is_full() else batch.mask  # nothing absent or padded: no mask
        outputs, last = run_rnn(self.lstm, x, mask)
        h, mask = rnn_output(outputs, last, mask, self.pool, self.sequence)
        y = self.proj(self.dropout(h))
        if mask is not None and y.dim() == 3:
            y = y * mask.unsqueeze(-1).to(y.dtype)  # the bias would fill padded steps
        return self.features(y, mask, batch)
