"""The ``text`` modality: strings -> token ids -> padded batches -> :class:`TextEncoder`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tokenizers import Tokenizer

from mmcore.errors import CheckpointError, DataError
from mmcore.modality import Modality
from mmcore_plugin_text.options import TextOptions
from mmcore_plugin_text.tokenizer import (
    load_tokenizer,
    tokenizer_hash,
    train_tokenizer,
)

if TYPE_CHECKING:  # torch is imported to collate and to build the encoder, not to check a spec
    from mmcore.batch import ModalityBatch
    from mmcore_plugin_text.encoder import TextEncoder

STATE_FILE = "tokenizer.json"


class TextModality(Modality[TextOptions]):
    """Strings, tokenized by a Hugging Face ``tokenizers`` tokenizer.

    The tokenizer is the ``tokenizer`` option's file when given, else one trained by
    :meth:`fit` on the training split; :meth:`save_state` writes it as ``tokenizer.json`` so a
    checkpoint reproduces the same ids. ``preprocess`` gives int64 token ids ``[T]``
    (``1 <= T <= max_length``); ``collate`` pads them to ``values [B, T]`` with ``mask [B, T]``.
    An empty or whitespace-only string counts as missing.
    """

    reads_files = False  # values are the texts themselves

    def __init__(
        self, name: str, options: TextOptions, root: Path | None = None, *,
        columns: Sequence[str] = (),
    ) -> None:
        super().__init__(name, options, root, columns=columns)
        self._tokenizer: Tokenizer | None = None

    # -- tokenizer ------------------------------------------------------------------------
    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer in use; loads the ``tokenizer`` option's file on first use."""
        if self._tokenizer is None:
            if self.options.tokenizer is None:
                raise RuntimeError(
                    f"text modality {self.name!r} has no tokenizer yet: call fit() on the "
                    "training texts, load_state() from a checkpoint, or set the tokenizer option"
                )
            self._tokenizer = self._load_option_tokenizer()
        return self._tokenizer

    def _load_option_tokenizer(self) -> Tokenizer:
        path = Path(self.options.tokenizer).expanduser()
        if not path.is_absolute() and self.root is not None:
            path = self.root / path
        if not path.is_file():
            raise DataError(
                f"text modality {self.name!r}: option tokenizer={self.options.tokenizer!r} "
                f"names no file ({path} does not exist); expected a Hugging Face tokenizer.json"
            )
        try:
            return load_tokenizer(path)
        except ValueError as exc:
            raise DataError(f"text modality {self.name!r}: {exc}") from None

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    # -- fitted state ---------------------------------------------------------------------
    def fit(self, values: Sequence[Any]) -> None:
        """Train the tokenizer on the present training texts (or load the given one)."""
        if self.options.tokenizer is not None:
            self._tokenizer = self._load_option_tokenizer()
            return
        texts = [v for v in values if not self.is_missing(v)]
        for value in texts:
            if not isinstance(value, str):
                # the data layer filters missing values out, so no row number is known here
                raise DataError(
                    f"text modality {self.name!r}: every training value must be a string, got "
                    f"{self._describe(value)}"
                )
        if not texts:
            raise DataError(
                f"text modality {self.name!r}: no training texts to fit a tokenizer on "
                "(every value is missing); give texts or set the tokenizer option"
            )
        self._tokenizer = train_tokenizer(texts, self.options)

    def save_state(self, directory: Path) -> None:
        self.tokenizer.save(str(Path(directory) / STATE_FILE))

    def load_state(self, directory: Path) -> None:
        path = Path(directory) / STATE_FILE
        if not path.is_file():
            raise CheckpointError(
                f"text modality {self.name!r}: {path} is missing; the checkpoint is incomplete"
            )
        try:
            self._tokenizer = load_tokenizer(path)
        except ValueError as exc:
            raise CheckpointError(f"text modality {self.name!r}: {exc}") from None

    def fingerprint(self) -> str:
        if self._tokenizer is None and self.options.tokenizer is None:
            tokenizer = "none"  # not fitted yet
        else:
            tokenizer = tokenizer_hash(self.tokenizer)
        return f"{super().fingerprint()}|tokenizer={tokenizer}"

    # -- data -----------------------------------------------------------------------------
    def is_missing(self, value: Any) -> bool:
        if isinstance(value, str):
            return not value.strip()
        return super().is_missing(value)

    @staticmethod
    def _describe(value: Any) -> str:
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return f"{type(value).__name__} {shown}"

    def preprocess(self, value: Any) -> np.ndarray:
        """A string -> int64 token ids ``[T]``, at most ``max_length`` of them."""
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {self._describe(value)}")
        text = value
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        if not ids:
            raise ValueError(f"text {text[:60]!r} has no tokens after normalization")
        limit = self.options.max_length
        if len(ids) > limit:
            if not self.options.truncate:
                raise ValueError(
                    f"text has {len(ids)} tokens, more than max_length={limit}; raise "
                    "max_length or set truncate: true to cut it"
                )
            ids = ids[:limit]
        return np.asarray(ids, dtype=np.int64)

    def collate(self, items: Sequence[np.ndarray | None]) -> ModalityBatch:
        """Token ids -> ``values [B, T]`` int64 (padding 0), ``mask [B, T]``, ``present [B]``."""
        import torch

        from mmcore.collate import pad_sequences

        return pad_sequences(items, empty_shape=(), dtype=torch.int64)

    def collate_stacked(self, values: np.ndarray) -> ModalityBatch:
        """:meth:`collate` for same-length samples, all present, in one call."""
        import torch

        from mmcore.collate import stacked_sequences

        return stacked_sequences(values, dtype=torch.int64)

    def build_encoder(self) -> TextEncoder:
        from mmcore_plugin_text.encoder import TextEncoder

        return TextEncoder(self.vocab_size, self.options)
