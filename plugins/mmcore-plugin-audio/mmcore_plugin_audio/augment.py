"""SpecAugment-style augmentation of log-mel batches ``[B, T, n_mels]``."""

from __future__ import annotations

import torch

from mmcore.batch import ModalityBatch
from mmcore.sequence import Augment
from mmcore.sequence.augment import augment_sequences
from mmcore_plugin_audio.options import AudioAugment


def augment_spectrograms(batch: ModalityBatch, options: AudioAugment,
                         generator: torch.Generator) -> ModalityBatch:
    """Time masking and noise (the shared sequence augmentation), then one masked span of
    up to ``freq_mask`` adjacent mel bands per clip."""
    if not options.active:
        return batch
    out = augment_sequences(batch, Augment(time_mask=options.time_mask, jitter=options.noise),
                            generator)
    if options.freq_mask:
        b, n_mels = out.values.shape[0], out.values.shape[-1]
        width = (torch.rand(b, generator=generator) * (options.freq_mask + 1)).long()
        start = (torch.rand(b, generator=generator) * (n_mels - width + 1)).long()
        bands = torch.arange(n_mels)[None, :]
        hidden = (bands >= start[:, None]) & (bands < (start + width)[:, None])
        values = out.values * (~hidden).unsqueeze(1).to(out.values.dtype)
        out = ModalityBatch(values, out.present, out.mask, dict(out.extra))
    return out
