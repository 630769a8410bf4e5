"""Options of the ``text`` modality (no torch import, so specs validate quickly)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mmcore.modality import ModalityOptions


class TextOptions(ModalityOptions):
    """Tokenizer and encoder settings of a ``text`` modality.

    Without ``tokenizer``, a tokenizer of kind ``model`` with at most ``vocab_size`` entries is
    trained on the training split's texts and saved beside the checkpoint. Texts longer than
    ``max_length`` tokens are cut to it when ``truncate`` is true, and rejected otherwise.
    """

    tokenizer: str | None = Field(
        None,
        description="a Hugging Face tokenizer.json to use instead of training one; a relative "
        "path resolves against the data root",
    )
    model: Literal["bpe", "wordpiece", "wordlevel"] = Field(
        "bpe",
        description="tokenizer model trained when no tokenizer is given; bpe and wordlevel "
        "train reproducibly, wordpiece may not (huggingface/tokenizers#1794)",
    )
    vocab_size: int = Field(8000, ge=10, description="largest vocabulary a trained tokenizer has")
    min_frequency: int = Field(
        1, ge=1, description="times a token must occur in training texts to enter the vocabulary"
    )
    lowercase: bool = Field(True, description="lower-case (and strip accents) before tokenizing")
    max_length: int = Field(128, ge=1, description="most tokens kept of one text")
    truncate: bool = Field(
        True, description="cut longer texts to max_length; false makes them an error"
    )
    embedding_size: int = Field(64, ge=1, description="token embedding size")
    hidden_size: int = Field(64, ge=1, description="LSTM hidden size (per direction)")
    num_layers: int = Field(1, ge=1, description="stacked LSTM layers")
    bidirectional: bool = Field(True, description="run the LSTM in both directions")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout on embeddings and between layers")
    size: int = Field(128, ge=1, description="output feature size D")
    pool: Literal["mean", "last"] = Field(
        "mean", description="pooled output: masked mean over tokens, or the LSTM's final state"
    )
    output: Literal["pooled", "sequence"] = Field(
        "pooled", description="features [B, D] (pooled) or [B, T, D] per token with a mask"
    )
