"""Random affine augmentation of image batches ``[B, C, H, W]`` or ``[B, T, C, H, W]``."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from mmcore.batch import ModalityBatch
from mmcore_plugin_image.options import ImageAugment


def affine_matrices(b: int, options: ImageAugment, generator: torch.Generator) -> torch.Tensor:
    """``[B, 2, 3]`` matrices for ``affine_grid``: flip, rotation, zoom and shift per sample."""
    def uniform(limit: float) -> torch.Tensor:
        return (torch.rand(b, generator=generator) * 2 - 1) * limit

    angle = uniform(math.radians(options.rotate))
    zoom = 1.0 + uniform(options.scale)
    flip = torch.where(torch.rand(b, generator=generator) < options.flip, -1.0, 1.0)
    shift_x, shift_y = uniform(2 * options.translate), uniform(2 * options.translate)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    return torch.stack([
        torch.stack([cos * flip, -sin, shift_x], dim=1),
        torch.stack([sin * flip, cos, shift_y], dim=1),
    ], dim=1)


def augment_images(batch: ModalityBatch, options: ImageAugment,
                   generator: torch.Generator) -> ModalityBatch:
    """``batch`` with one random affine transform per sample (shared by its frames)."""
    if not options.active:
        return batch
    x = batch.values
    frames = x.dim() == 5
    b = x.shape[0]
    theta = affine_matrices(b, options, generator).to(x.dtype)
    images = x.flatten(0, 1) if frames else x
    if frames:
        theta = theta.repeat_interleave(x.shape[1], dim=0)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    out = out.reshape(x.shape)
    keep = batch.present if batch.mask is None else batch.mask
    out = out * keep.view(*keep.shape, *([1] * (out.dim() - keep.dim()))).to(out.dtype)
    return ModalityBatch(out, batch.present, batch.mask, dict(batch.extra))
