"""``hf_text``: strings -> the pretrained tokenizer's ids -> a pretrained text model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from mmcore.batch import ModalityBatch
from mmcore.collate import pad_sequences, stacked_sequences
from mmcore_plugin_transformers.encoder import Kind
from mmcore_plugin_transformers.modality import PretrainedModality
from mmcore_plugin_transformers.options import TextOptions


class PretrainedText(PretrainedModality[TextOptions]):
    """Strings tokenized by the pretrained model's own tokenizer (``AutoTokenizer``, with its
    special tokens); ``preprocess`` gives int64 ids ``[T]``, ``collate`` pads them to
    ``values [B, T]`` with the attention mask as ``mask``. An empty string counts as missing."""

    kind: ClassVar[Kind] = "text"
    reads_files = False  # values are the texts themselves

    def load_processor(self, source: str, **kwargs: Any) -> Any:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(source, **kwargs)

    def is_missing(self, value: Any) -> bool:
        if isinstance(value, str):
            return not value.strip()
        return super().is_missing(value)

    def preprocess(self, value: Any) -> np.ndarray:
        self._require()
        if not isinstance(value, str):
            shown = repr(value)
            raise ValueError(f"expected a string, got {type(value).__name__} {shown[:60]}")
        limit = self.options.max_length
        ids = self.processor(value, truncation=self.options.truncate, max_length=limit)[
            "input_ids"]
        if len(ids) > limit:
            raise ValueError(f"text has {len(ids)} tokens, more than max_length={limit}; raise "
                             "max_length or set truncate: true to cut it")
        if not ids:
            raise ValueError(f"text {value[:60]!r} has no tokens")
        return np.asarray(ids, dtype=np.int64)

    def collate(self, items: Sequence[np.ndarray | None]) -> ModalityBatch:
        return pad_sequences(items, empty_shape=(), dtype=torch.int64)

    def collate_stacked(self, values: np.ndarray) -> ModalityBatch:
        return stacked_sequences(values, dtype=torch.int64)
