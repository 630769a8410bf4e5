"""Options of the pretrained modalities (no torch or transformers import: specs validate fast)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from mmcore.modality import ModalityOptions


class PretrainedOptions(ModalityOptions):
    """What every pretrained modality shares: where the backbone is and how to use it.

    ``pretrained`` is a folder written by ``save_pretrained`` (``config.json``,
    ``model.safetensors`` and the tokenizer or processor files); a relative path resolves
    against the data root. A hub model id is accepted only with ``allow_download: true``.
    Weights are read from safetensors files only (never a pickled ``.bin``), and no model code
    from the folder is run (``trust_remote_code`` is never set).
    """

    pretrained: str = Field(
        description="folder holding the pretrained model and its tokenizer/processor files "
        "(relative paths resolve against the data root), or a hub id with allow_download"
    )
    allow_download: bool = Field(
        False, description="let pretrained name a hub model id, downloaded on first use"
    )
    output: Literal["pooled", "sequence"] = Field(
        "pooled", description="'pooled': one vector per sample; 'sequence': every token's or "
        "frame's state with its mask, for attention-style fusions"
    )
    pooling: Literal["cls", "mean"] = Field(
        "mean", description="how a pooled output is made: 'cls' (the first token's state) or "
        "'mean' (the mean over the real tokens or frames)"
    )
    size: int | None = Field(
        None, ge=1, description="project the features to this size (default: the backbone's "
        "hidden size, no projection)"
    )
    freeze_layers: int = Field(
        0, ge=0, description="keep the embeddings and the first n transformer layers fixed for "
        "the whole run (modalities.<m>.freeze fixes the whole encoder, for a while or for good)"
    )
    gradient_checkpointing: bool = Field(
        False, description="recompute activations in the backward pass: less memory, ~30% slower"
    )


class TextOptions(PretrainedOptions):
    """A pretrained text model (BERT, RoBERTa, MiniLM, ...) with its tokenizer."""

    max_length: int = Field(128, ge=1, description="most tokens kept of one text")
    truncate: bool = Field(True, description="cut longer texts; false makes them bad values")


class ImageOptions(PretrainedOptions):
    """A pretrained vision model (ViT, DeiT, BEiT, ConvNeXt, ...) with its image processor."""


class AudioOptions(PretrainedOptions):
    """A pretrained speech model of the wav2vec2 family (wav2vec2, HuBERT, WavLM) with its
    feature extractor; audio is resampled to the extractor's sampling rate."""

    max_seconds: float | None = Field(
        None, gt=0, description="cut longer recordings to this many seconds (default: keep all)"
    )

    @model_validator(mode="after")
    def _no_cls(self) -> AudioOptions:
        if self.pooling == "cls":
            raise ValueError("pooling 'cls' has no meaning for speech models (no class token): "
                             "use 'mean'")
        return self
