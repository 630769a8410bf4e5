"""Image augmentation: off by default, seeded, a flip is a flip, frames share a transform."""

from __future__ import annotations

import pytest
import torch
from mmcore_plugin_image.modality import ImageModality
from mmcore_plugin_image.options import ImageAugment, ImageOptions

from mmcore.batch import ModalityBatch


def batch(b=4, frames=None):
    g = torch.Generator().manual_seed(0)
    shape = (b, 1, 8, 8) if frames is None else (b, frames, 1, 8, 8)
    values = torch.randn(shape, generator=g)
    mask = None if frames is None else torch.ones(b, frames, dtype=torch.bool)
    return ModalityBatch(values, torch.ones(b, dtype=torch.bool), mask)


def modality(**augment):
    return ImageModality("image", ImageOptions(size=8, channels=1, augment=augment))


def test_off_by_default_and_seeded():
    x = batch()
    assert modality().augment(x, torch.Generator()) is x
    m = modality(rotate=15, scale=0.1, translate=0.1)
    one = m.augment(x, torch.Generator().manual_seed(1)).values
    two = m.augment(x, torch.Generator().manual_seed(1)).values
    torch.testing.assert_close(one, two)
    assert not torch.equal(one, m.augment(x, torch.Generator().manual_seed(2)).values)
    assert one.shape == x.values.shape


def test_a_certain_flip_mirrors_every_image():
    x = batch()
    out = modality(flip=1.0).augment(x, torch.Generator().manual_seed(0)).values
    torch.testing.assert_close(out, torch.flip(x.values, dims=[-1]), atol=1e-5, rtol=1e-5)


def test_frames_of_a_sample_share_the_transform_and_absent_rows_stay_zero():
    x = batch(b=2, frames=3)
    x.values[:, 1] = x.values[:, 0]  # two identical frames in each sample
    x.present[1] = False
    x.values[1] = 0
    x.mask[1] = False
    out = modality(rotate=20, translate=0.2).augment(x, torch.Generator().manual_seed(0)).values
    torch.testing.assert_close(out[0, 0], out[0, 1])
    assert not out[1].any()


def test_options_are_checked():
    with pytest.raises(ValueError):
        ImageAugment(flip=1.5)
