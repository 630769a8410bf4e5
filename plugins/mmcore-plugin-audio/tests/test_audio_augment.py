"""Audio augmentation: off by default, seeded, one frequency span of at most freq_mask bands."""

from __future__ import annotations

import pytest
import torch
from mmcore_plugin_audio.modality import AudioModality
from mmcore_plugin_audio.options import AudioOptions

from mmcore.batch import ModalityBatch


def batch():
    g = torch.Generator().manual_seed(0)
    values = torch.randn(3, 20, 16, generator=g) + 5.0  # no exact zeros
    mask = torch.ones(3, 20, dtype=torch.bool)
    mask[2, 12:] = False
    values[2, 12:] = 0
    return ModalityBatch(values, torch.ones(3, dtype=torch.bool), mask)


def modality(**augment):
    return AudioModality("audio", AudioOptions(sample_rate=8000, n_fft=256, hop_length=80,
                                               n_mels=16, augment=augment))


def test_off_by_default_and_seeded():
    x = batch()
    assert modality().augment(x, torch.Generator()) is x
    m = modality(time_mask=0.2, freq_mask=4, noise=0.1)
    one = m.augment(x, torch.Generator().manual_seed(1)).values
    torch.testing.assert_close(one, m.augment(x, torch.Generator().manual_seed(1)).values)
    assert not one[2, 12:].any()  # padding stays zero


def test_frequency_mask_hides_one_span_of_at_most_freq_mask_bands():
    x = batch()
    out = modality(freq_mask=4).augment(x, torch.Generator().manual_seed(3)).values
    for row in out:
        hidden = (row == 0).all(dim=0).nonzero().squeeze(1)
        assert len(hidden) <= 4 and (len(hidden) < 2 or hidden.diff().eq(1).all())


def test_freq_mask_must_leave_bands():
    with pytest.raises(ValueError, match="must be below n_mels"):
        modality(freq_mask=16)
