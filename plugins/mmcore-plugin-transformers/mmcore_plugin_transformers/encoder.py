"""The encoder around a pretrained backbone: inputs in, pooled or sequence features out."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from mmcore.batch import Features, ModalityBatch
from mmcore.encoder import Encoder
from mmcore_plugin_transformers.backbone import min_audio_samples

Kind = Literal["text", "image", "audio"]


class PretrainedEncoder(Encoder):
    """A ``transformers`` backbone as an mmcore encoder.

    ``kind`` says how a batch feeds it: ``text`` (``values`` are token ids, ``mask`` the
    attention mask), ``image`` (``values`` are pixel values ``[B, C, H, W]``) or ``audio``
    (``values`` are waveforms ``[B, n]``, ``mask`` the real samples). The last hidden state
    is kept with its mask (``output="sequence"``) or pooled as ``pooling`` says (``cls``: the
    first token; ``mean``: over the real steps), and optionally projected to ``size``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        kind: Kind,
        output: str,
        pooling: str = "mean",
        size: int | None = None,
        gradient_checkpointing: bool = False,
    ) -> None:
        hidden = _hidden_size(backbone)
        super().__init__(size or hidden, sequence=output == "sequence")
        self.backbone = backbone
        self.kind = kind
        self.pooling = pooling
        self.proj = nn.Linear(hidden, size) if size else nn.Identity()
        if gradient_checkpointing and getattr(backbone, "supports_gradient_checkpointing", False):
            backbone.gradient_checkpointing_enable()
        config = getattr(backbone, "config", None)
        # wav2vec2 models with group norm in the feature encoder must not get a mask
        self._audio_mask = getattr(config, "feat_extract_norm", "layer") == "layer"
        self._min_samples = min_audio_samples(config) if kind == "audio" else 1

    def forward(self, batch: ModalityBatch) -> Features:
        hidden, mask = self._hidden(batch)
        if self.pooling == "cls" and not self.sequence:
            return self.features(self.proj(hidden[:, 0]), None, batch)
        return self.features(self.proj(hidden), mask, batch)

    def _hidden(self, batch: ModalityBatch) -> tuple[Tensor, Tensor | None]:
        values, mask = batch.values, batch.mask
        if self.kind == "image":
            out = self.backbone(pixel_values=values).last_hidden_state
            if out.dim() == 4:  # convolutional backbones: [B, C, H, W] -> [B, H*W, C]
                out = out.flatten(2).transpose(1, 2)
            return out, None
        assert mask is not None
        # a row without any step (an absent sample) attends to its first position, so that
        # no softmax runs over nothing; Encoder.features zeroes the row afterwards
        attend = mask.clone()
        attend[:, 0] = True
        if self.kind == "text":
            out = self.backbone(input_ids=values, attention_mask=attend.long()).last_hidden_state
            return out, mask
        if values.shape[1] < self._min_samples:  # a batch without any recording
            grow = self._min_samples - values.shape[1]
            values = nn.functional.pad(values, (0, grow))
            attend = nn.functional.pad(attend, (0, grow))
        attend[:, : self._min_samples] = True  # absent rows: enough samples for one frame
        out = self.backbone(
            input_values=values, attention_mask=attend.long() if self._audio_mask else None
        ).last_hidden_state
        lengths = self.backbone._get_feat_extract_output_lengths(mask.sum(dim=1))
        frames = torch.arange(out.shape[1], device=out.device)
        return out, frames.unsqueeze(0) < lengths.clamp_min(0).unsqueeze(1)


def _hidden_size(backbone: nn.Module) -> int:
    config = getattr(backbone, "config", None)
    for key in ("hidden_size", "d_model", "embed_dim"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    sizes = getattr(config, "hidden_sizes", None)  # ConvNeXt, ResNet: one per stage
    if isinstance(sizes, list | tuple) and sizes:
        return int(sizes[-1])
    raise ValueError(f"cannot tell the hidden size of {type(backbone).__name__} from its config")
