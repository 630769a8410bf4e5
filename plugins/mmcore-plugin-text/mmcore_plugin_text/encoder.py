"""The text encoder: token embedding, LSTM, then a linear layer per token."""

from __future__ import annotations

from torch import nn

from mmcore.batch import Features, ModalityBatch
from mmcore.encoder import Encoder
from mmcore.layers import rnn_output, run_rnn
from mmcore_plugin_text.options import TextOptions


class TextEncoder(Encoder):
    """Token ids ``[B, T]`` (int64, ``mask [B, T]``) -> features of size ``options.size``.

    Pooled output (``output="pooled"``) is ``[B, D]``: the masked mean of the per-token
    outputs (``pool="mean"``) or a projection of the LSTM's final state at each text's true
    length (``pool="last"``). Sequence output is ``[B, T, D]`` with the input's mask. Rows of
    absent samples are zero.

    Args:
        vocab_size: number of token ids (the tokenizer's vocabulary size).
        options: the modality's options (sizes, layers, dropout, output).
    """

    def __init__(self, vocab_size: int, options: TextOptions) -> None:
        super().__init__(options.size, sequence=options.output == "sequence")
        self.pool = options.pool
        self.embedding = nn.Embedding(vocab_size, options.embedding_size)
        self.dropout = nn.Dropout(options.dropout)
        self.lstm = nn.LSTM(
            options.embedding_size,
            options.hidden_size,
            num_layers=options.num_layers,
            batch_first=True,
            bidirectional=options.bidirectional,
            dropout=options.dropout if options.num_layers > 1 else 0.0,
        )
        directions = 2 if options.bidirectional else 1
        self.proj = nn.Linear(options.hidden_size * directions, options.size)

    def forward(self, batch: ModalityBatch) -> Features:
        x = self.dropout(self.embedding(batch.values))
        outputs, last = run_rnn(self.lstm, x, batch.mask)
        h, mask = rnn_output(outputs, last, batch.mask, self.pool, self.sequence)
        return self.features(self.proj(h), mask, batch)
