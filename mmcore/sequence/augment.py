"""Training-time augmentation of padded sequence batches ``[B, T, ...]`` (torch).

Every function draws from the ``generator`` it is given, on the CPU, so results depend only
on the generator's seed; padded steps stay zero and rows keep their lengths.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mmcore.batch import ModalityBatch
from mmcore.sequence.options import Augment


def augment_sequences(batch: ModalityBatch, options: Augment,
                      generator: torch.Generator) -> ModalityBatch:
    """``batch`` with the augmentations ``options`` declares applied to its values."""
    if not options.active:
        return batch
    x = batch.values
    b, t = x.shape[0], x.shape[1]
    flat = x.reshape(b, t, -1).clone()
    mask = batch.mask if batch.mask is not None else torch.ones(b, t, dtype=torch.bool)
    lengths = mask.sum(dim=1)
    c = flat.shape[-1]
    if options.shift > 0:
        flat = _shift(flat, lengths, options.shift, generator)
    if options.scale > 0:
        gains = torch.exp(torch.randn(b, 1, c, generator=generator) * options.scale)
        flat = flat * gains.to(flat.dtype)
    if options.jitter > 0:
        flat = flat + torch.randn(flat.shape, generator=generator).to(flat.dtype) * options.jitter
    if options.time_mask > 0:
        flat = flat * _span_mask(lengths, t, options.time_mask, generator).unsqueeze(-1)
    if options.channel_mask > 0:
        keep = torch.rand(b, 1, c, generator=generator) >= options.channel_mask
        flat = flat * keep.to(flat.dtype)
    flat = flat * mask.unsqueeze(-1).to(flat.dtype)
    return ModalityBatch(flat.reshape(x.shape), batch.present, batch.mask, dict(batch.extra))


def _shift(x: Tensor, lengths: Tensor, fraction: float, generator: torch.Generator) -> Tensor:
    """Roll each row's real steps by up to ``fraction`` of its length (either way)."""
    b, t = x.shape[:2]
    most = (lengths.float() * fraction).floor()
    k = ((torch.rand(b, generator=generator) * 2 - 1) * most).round().long()
    steps = torch.arange(t)[None, :]
    src = (steps - k[:, None]) % lengths.clamp_min(1)[:, None]
    src = torch.where(steps < lengths[:, None], src, steps)
    return torch.gather(x, 1, src.unsqueeze(-1).expand_as(x))


def _span_mask(lengths: Tensor, t: int, fraction: float, generator: torch.Generator) -> Tensor:
    """``[B, T]`` float: 0 on one random span of up to ``fraction`` of each row's length."""
    b = lengths.shape[0]
    width = (torch.rand(b, generator=generator) * lengths.float() * fraction).floor().long()
    start = (torch.rand(b, generator=generator) * (lengths - width + 1).clamp_min(1)).long()
    steps = torch.arange(t)[None, :]
    hidden = (steps >= start[:, None]) & (steps < (start + width)[:, None])
    return (~hidden).float()
