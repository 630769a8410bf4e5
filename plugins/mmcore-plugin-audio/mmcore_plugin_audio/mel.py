"""Mel scales and triangular mel filterbanks (numpy only, no torch).

The filterbank is built the way ``librosa.filters.mel`` and
``torchaudio.functional.melscale_fbanks`` build theirs: ``n_mels + 2`` points equally spaced
on the mel scale between ``f_min`` and ``f_max`` give each filter's lower edge, peak and upper
edge; each FFT bin's weight is the triangle's height at the bin's centre frequency. With
``norm="slaney"`` each triangle is scaled by ``2 / (upper - lower)`` (in Hz), so that its
area is about 1 and every band carries about the same energy.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

MelScale = Literal["htk", "slaney"]

# Slaney's Auditory Toolbox scale: linear up to 1 kHz (3 mels per 200 Hz), logarithmic above,
# with 27 mels per factor of 6.4 in frequency.
_SLANEY_BREAK_HZ = 1000.0
_SLANEY_HZ_PER_MEL = 200.0 / 3.0
_SLANEY_BREAK_MEL = _SLANEY_BREAK_HZ / _SLANEY_HZ_PER_MEL
_SLANEY_LOG_STEP = np.log(6.4) / 27.0


def hz_to_mel(hz: np.ndarray | float, scale: MelScale = "htk") -> np.ndarray:
    """Frequencies in Hz -> mels. HTK: ``2595 log10(1 + f/700)``; Slaney: linear up to 1 kHz,
    logarithmic above (the constants above)."""
    f = np.asarray(hz, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + f / 700.0)
    linear = f / _SLANEY_HZ_PER_MEL
    # np.maximum keeps log() away from 0 Hz, whose value np.where discards anyway
    log = _SLANEY_BREAK_MEL + np.log(np.maximum(f, 1e-300) / _SLANEY_BREAK_HZ) / _SLANEY_LOG_STEP
    return np.where(f >= _SLANEY_BREAK_HZ, log, linear)


def mel_to_hz(mel: np.ndarray | float, scale: MelScale = "htk") -> np.ndarray:
    """The inverse of :func:`hz_to_mel`."""
    m = np.asarray(mel, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    linear = m * _SLANEY_HZ_PER_MEL
    log = _SLANEY_BREAK_HZ * np.exp(_SLANEY_LOG_STEP * (m - _SLANEY_BREAK_MEL))
    return np.where(m >= _SLANEY_BREAK_MEL, log, linear)


def mel_frequencies(n: int, f_min: float, f_max: float, scale: MelScale = "htk") -> np.ndarray:
    """``n`` frequencies (Hz) equally spaced on the mel scale from ``f_min`` to ``f_max``."""
    mels = np.linspace(hz_to_mel(f_min, scale), hz_to_mel(f_max, scale), n)
    return mel_to_hz(mels, scale)


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    scale: MelScale = "htk",
    norm: Literal["slaney"] | None = None,
) -> np.ndarray:
    """Weights ``[n_fft // 2 + 1, n_mels]`` (float32) that map a power spectrum's bins
    (bin ``k`` at ``k * sample_rate / n_fft`` Hz) to mel bands: ``mel = power @ weights``.

    Raises ``ValueError`` when a band would get no weight at all (too many mels for the
    FFT's resolution), naming the first such band.
    """
    f_max = sample_rate / 2.0 if f_max is None else float(f_max)
    bins = np.arange(n_fft // 2 + 1) * (sample_rate / n_fft)
    edges = mel_frequencies(n_mels + 2, f_min, f_max, scale)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / (centre - lower)
    falling = (upper - bins[None, :]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    if norm == "slaney":
        weights *= 2.0 / (upper - lower)
    empty = np.flatnonzero(weights.max(axis=1) <= 0.0)
    if empty.size:
        band = int(empty[0])
        raise ValueError(
            f"mel band {band} ({edges[band]:.1f}-{edges[band + 2]:.1f} Hz) falls between two FFT "
            f"bins ({sample_rate / n_fft:.1f} Hz apart): use fewer mels (n_mels={n_mels}) or a "
            f"larger n_fft (n_fft={n_fft})"
        )
    return np.ascontiguousarray(weights.T, dtype=np.float32)
