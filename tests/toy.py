"""A tiny modality for core tests: a cell holds a list of numbers (a 1-feature sequence)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

import mmcore
from mmcore.collate import pad_sequences
from mmcore.layers import run_rnn


class ToyOptions(mmcore.ModalityOptions):
    hidden: int = 8
    output: str = "pooled"


class ToyEncoder(mmcore.Encoder):
    def __init__(self, hidden: int, sequence: bool) -> None:
        super().__init__(hidden, sequence=sequence)
        self.rnn = nn.GRU(1, hidden, batch_first=True)

    def forward(self, batch):
        out, _ = run_rnn(self.rnn, batch.values.unsqueeze(-1), batch.mask)
        return self.features(out, batch.mask, batch)


class ToyModality(mmcore.Modality[ToyOptions]):
    def __init__(self, name: str, options: ToyOptions | None = None, root: Any = None, *,
                 columns: Any = ()) -> None:
        # a test convenience: by hand, the toy's defaults; built from a spec, the registered
        # options model's validated object
        super().__init__(name, options if options is not None else ToyOptions(), root,
                         columns=columns)

    def preprocess(self, value: Any) -> np.ndarray:
        arr = np.asarray(value if isinstance(value, list | tuple) else [value], dtype=np.float32)
        if not np.isfinite(arr).all():
            raise ValueError("non-finite value")
        return arr

    def collate(self, items):
        return pad_sequences(items, empty_shape=(), dtype=torch.float32)

    def build_encoder(self):
        return ToyEncoder(self.options.hidden, self.options.output == "sequence")


class ToyPlugin:
    """Registers modalities ``toy`` and ``toy2`` (same implementation)."""

    @mmcore.hookimpl
    def register_modalities(self, register):
        register("toy", ToyModality, ToyOptions, "numbers as a sequence")
        register("toy2", ToyModality, ToyOptions, "numbers as a sequence")
