"""Hiding whole modalities of samples, as if the data lacked them: modality dropout in training,
the modality report and the robustness report, ``--hide-drifting`` and the export's parity check."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from mmcore.batch import ModalityBatch


def hide(batch: ModalityBatch, drop: Tensor) -> ModalityBatch:
    """``batch`` with the rows where ``drop`` (``[B]`` bool) is true made absent.

    Those rows get ``present=False``, zero ``values`` and an all-false ``mask``, exactly like a
    sample that lacked the modality in the data. ``extra`` tensors are left as they are: they
    describe the padded layout (offsets, lengths) rather than carry content.
    """
    drop = drop.to(batch.present.device)
    keep = ~drop
    shape = (-1,) + (1,) * (batch.values.dim() - 1)
    values = batch.values * keep.view(shape).to(batch.values.dtype)
    mask = None if batch.mask is None else batch.mask & keep.view(-1, 1)
    return ModalityBatch(values, batch.present & keep, mask, dict(batch.extra))


def hide_all(inputs: Mapping[str, ModalityBatch], names: set[str]) -> dict[str, ModalityBatch]:
    """``inputs`` with the modalities in ``names`` absent for every row."""
    out = {}
    for name, mb in inputs.items():
        if name in names:
            out[name] = hide(mb, torch.ones_like(mb.present, dtype=torch.bool))
        else:
            out[name] = mb
    return out


def dropout_masks(
    present: Mapping[str, Tensor], p: float, generator: torch.Generator
) -> dict[str, Tensor]:
    """Which (sample, modality) pairs to hide: each present modality of each sample with
    probability ``p``, but never every present modality of a sample (one of them, chosen at
    random, is then kept).

    ``present`` maps modality name -> ``[B]`` bool (CPU). Draws come from ``generator`` in
    sorted-name order, so a generator seeded the same way gives the same masks.
    """
    names = sorted(present)
    if not names:
        return {}
    here = torch.stack([present[n].cpu() for n in names], dim=1)  # [B, M]
    drop = (torch.rand(here.shape, generator=generator) < p) & here
    emptied = here.any(1) & ~(here & ~drop).any(1)
    if emptied.any():
        # A random present modality of each emptied row is kept (scores of absent ones are -1).
        scores = torch.rand(here.shape, generator=generator).masked_fill(~here, -1.0)
        keep = torch.zeros_like(drop)
        keep[torch.arange(len(keep)), scores.argmax(1)] = True
        drop &= ~(keep & emptied.unsqueeze(1))
    return {n: drop[:, i] for i, n in enumerate(names)}


def modality_dropout(
    inputs: Mapping[str, ModalityBatch], p: float, generator: torch.Generator
) -> dict[str, ModalityBatch]:
    """Apply :func:`dropout_masks` to a batch's inputs."""
    masks = dropout_masks({n: mb.present for n, mb in inputs.items()}, p, generator)
    return {n: hide(mb, masks[n]) if masks[n].any() else mb for n, mb in inputs.items()}
