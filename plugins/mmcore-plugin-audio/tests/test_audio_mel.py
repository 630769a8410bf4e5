"""Mel scales, filterbanks and the STFT against published reference values and independent
implementations (librosa and torchaudio cannot be installed here, so their documented
numbers are hard-coded, and ``torch.stft`` serves as the STFT reference)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from mmcore_plugin_audio.features import LogMel
from mmcore_plugin_audio.mel import hz_to_mel, mel_filterbank, mel_frequencies, mel_to_hz
from mmcore_plugin_audio.options import AudioOptions
from pydantic import ValidationError

# librosa.mel_frequencies(n_mels=40) (Slaney scale, fmin=0, fmax=11025), as printed in the
# function's documented example (librosa.org/doc/latest/generated/librosa.mel_frequencies.html)
LIBROSA_MEL_FREQUENCIES_40 = [
    0.0, 85.317, 170.635, 255.952, 341.269, 426.586, 511.904, 597.221, 682.538, 767.855,
    853.173, 938.49, 1024.856, 1119.114, 1222.042, 1334.436, 1457.167, 1591.187, 1737.532,
    1897.337, 2071.84, 2262.393, 2470.47, 2697.686, 2945.799, 3216.731, 3512.582, 3835.643,
    4188.417, 4573.636, 4994.285, 5453.621, 5955.205, 6502.92, 7101.009, 7754.107, 8467.272,
    9246.028, 10096.408, 11025.0,
]
# librosa.filters.mel(sr=22050, n_fft=2048) (Slaney scale, Slaney norm, 128 mels): the first
# bins of bands 0 and 1, as published in the docs of the mel_filter crate, a port checked
# against librosa (docs.rs/mel_filter, fn mel); librosa's own docs show band 0, bin 1 as 0.016
LIBROSA_MEL_BAND0 = [0.0, 0.016182853208219942, 0.032365706416439884, 0.028990088037379964,
                     0.012807234829160026, 0.0]
LIBROSA_MEL_BAND1 = [0.0, 0.0, 0.0, 0.009779235793639925, 0.025962089001859864,
                     0.035393705451959974, 0.01921085224374004, 0.003027999035520103, 0.0]


def test_mel_scales_at_known_points() -> None:
    # HTK: 2595 log10(1 + f / 700) puts 1000 Hz at 999.99 mel (O'Shaughnessy's 1 kHz anchor)
    assert hz_to_mel(1000.0, "htk") == pytest.approx(999.9855371, abs=1e-6)
    assert hz_to_mel(700.0, "htk") == pytest.approx(2595 * math.log10(2), abs=1e-9)
    # Slaney: 3 mels per 200 Hz up to 1 kHz (15 mels), then 27 mels per factor of 6.4
    assert hz_to_mel(500.0, "slaney") == pytest.approx(7.5)
    assert hz_to_mel(1000.0, "slaney") == pytest.approx(15.0)
    assert hz_to_mel(6400.0, "slaney") == pytest.approx(42.0)
    assert hz_to_mel(0.0, "slaney") == 0.0
    freqs = np.array([0.0, 60.0, 999.0, 1000.0, 1001.0, 4000.0, 11025.0])
    for scale in ("htk", "slaney"):
        np.testing.assert_allclose(mel_to_hz(hz_to_mel(freqs, scale), scale), freqs, atol=1e-9)


def test_mel_frequencies_match_librosa_documentation() -> None:
    got = mel_frequencies(40, 0.0, 11025.0, "slaney")
    np.testing.assert_allclose(got, LIBROSA_MEL_FREQUENCIES_40, atol=5e-4)


def test_slaney_filterbank_matches_librosa_values() -> None:
    weights = mel_filterbank(22050, 2048, 128, scale="slaney", norm="slaney")
    assert weights.shape == (1025, 128) and weights.dtype == np.float32
    np.testing.assert_allclose(weights[:6, 0], LIBROSA_MEL_BAND0, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(weights[:9, 1], LIBROSA_MEL_BAND1, rtol=1e-6, atol=1e-9)


def _reference_filterbank(sr: int, n_fft: int, n_mels: int, f_min: float, f_max: float,
                          htk: bool, slaney_norm: bool) -> np.ndarray:
    """The textbook construction, written out bin by bin, independently of the plugin."""

    def to_mel(f: float) -> float:
        if htk:
            return 2595.0 * math.log10(1.0 + f / 700.0)
        return f * 3 / 200 if f < 1000 else 15 + 27 * math.log(f / 1000) / math.log(6.4)

    def to_hz(m: float) -> float:
        if htk:
            return 700.0 * (10 ** (m / 2595.0) - 1.0)
        return m * 200 / 3 if m < 15 else 1000 * 6.4 ** ((m - 15) / 27)

    lo, hi = to_mel(f_min), to_mel(f_max)
    edges = [to_hz(lo + (hi - lo) * i / (n_mels + 1)) for i in range(n_mels + 2)]
    out = np.zeros((n_fft // 2 + 1, n_mels))
    for band in range(n_mels):
        left, centre, right = edges[band : band + 3]
        for k in range(n_fft // 2 + 1):
            f = k * sr / n_fft
            if left < f <= centre:
                out[k, band] = (f - left) / (centre - left)
            elif centre < f < right:
                out[k, band] = (right - f) / (right - centre)
        if slaney_norm:
            out[:, band] *= 2.0 / (right - left)
    return out


@pytest.mark.parametrize(
    ("sr", "n_fft", "n_mels", "f_min", "f_max", "scale", "norm"),
    [
        (16000, 512, 40, 0.0, 8000.0, "htk", None),  # torchaudio's melscale_fbanks defaults
        (8000, 256, 24, 20.0, 3800.0, "htk", "slaney"),
        (16000, 400, 32, 0.0, 8000.0, "slaney", "slaney"),  # librosa's defaults, odd bins
        (22050, 1024, 64, 50.0, 11025.0, "slaney", None),
    ],
)
def test_filterbank_matches_independent_construction(sr, n_fft, n_mels, f_min, f_max, scale,
                                                     norm) -> None:
    got = mel_filterbank(sr, n_fft, n_mels, f_min, f_max, scale, norm)
    want = _reference_filterbank(sr, n_fft, n_mels, f_min, f_max, scale == "htk",
                                 norm == "slaney")
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-8)


def test_filterbank_shape_peaks_and_area() -> None:
    sr, n_fft, n_mels = 16000, 512, 40
    plain = mel_filterbank(sr, n_fft, n_mels)
    edges = mel_frequencies(n_mels + 2, 0.0, sr / 2)
    bin_hz = sr / n_fft
    for band in range(n_mels):
        peak_bin = int(np.argmax(plain[:, band]))
        # the triangle peaks (at most 1) at one of the two bins around its centre frequency
        centre = edges[band + 1] / bin_hz
        assert peak_bin in (math.floor(centre), math.ceil(centre))
        assert 0.0 < plain[:, band].max() <= 1.0
        # and is zero outside its two neighbours' centres
        outside = (np.arange(n_fft // 2 + 1) * bin_hz <= edges[band]) | (
            np.arange(n_fft // 2 + 1) * bin_hz >= edges[band + 2])
        assert not plain[outside, band].any()
    area = mel_filterbank(sr, n_fft, n_mels, norm="slaney").sum(axis=0) * bin_hz
    # a triangle's area from its samples is exact up to where the bins fall on its corners
    wide = (edges[2:] - edges[:-2]) > 8 * bin_hz
    assert wide.sum() > 20
    np.testing.assert_allclose(area[wide], 1.0, rtol=0.01)
    np.testing.assert_allclose(area, 1.0, rtol=0.12)


def test_too_many_mels_for_the_fft_is_refused() -> None:
    with pytest.raises(ValueError, match=r"mel band 0 .* falls between two FFT bins .*n_mels=128"):
        mel_filterbank(8000, 128, 128)
    with pytest.raises(ValidationError, match="use fewer mels"):
        AudioOptions(sample_rate=8000, n_fft=128, n_mels=128)


@pytest.mark.parametrize(("n_fft", "win_length", "hop"), [(512, 400, 160), (255, None, 100),
                                                          (256, 201, 64)])
def test_stft_power_matches_torch_stft(n_fft: int, win_length: int | None, hop: int) -> None:
    options = AudioOptions(n_fft=n_fft, win_length=win_length, hop_length=hop, n_mels=16)
    logmel = LogMel(options)
    win = win_length or n_fft
    for n in (1, 90, 300, 4001):
        x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
        want = torch.stft(torch.from_numpy(x), n_fft, hop, win, torch.hann_window(win),
                          center=True, pad_mode="constant", return_complex=True)
        want = want.abs().square().T.numpy()
        got = logmel.power(x)
        assert got.shape == want.shape == (1 + (n + 2 * (n_fft // 2) - n_fft) // hop,
                                           n_fft // 2 + 1)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(want.max()))


def test_a_pure_tone_lands_in_its_mel_band() -> None:
    options = AudioOptions(normalize="none", n_mels=40)
    edges = mel_frequencies(42, 0.0, 8000.0)
    t = np.arange(16000) / 16000
    for hz in (300.0, 1000.0, 3000.0):
        spectrum = LogMel(options)(np.sin(2 * np.pi * hz * t).astype(np.float32))
        loudest = int(np.argmax(spectrum.mean(axis=0)))
        assert edges[loudest] < hz < edges[loudest + 2]
        assert abs(edges[loudest + 1] - hz) == pytest.approx(np.abs(edges[1:-1] - hz).min())
