"""Waveform -> log-mel spectrogram: a short-time Fourier transform (numpy's pocketfft) and the
mel filterbank of :mod:`.mel`.

Frames match ``torch.stft(center=True, pad_mode="constant", window=hann_window(win_length))``
(the tests check this). Numpy rather than torch because ``preprocess`` runs once per clip on
small arrays: there, torch's (and BLAS's) thread pools cost 10-20x the work itself when the
CPU cores are busy, while pocketfft and ``einsum`` run on the calling thread only.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from mmcore_plugin_audio.mel import mel_filterbank
from mmcore_plugin_audio.options import AudioOptions

#: Floor of the standard deviation divided by (log-mel units): a (nearly) constant clip or band
#: is centred, not blown up into noise.
_MIN_STD = 1e-3


def hann_window(win_length: int, n_fft: int) -> np.ndarray:
    """The periodic Hann window of ``win_length`` samples, zero-padded on both sides to
    ``n_fft`` (centred, as ``torch.stft`` and ``librosa.stft`` place a shorter window)."""
    n = np.arange(win_length)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / win_length)
    left = (n_fft - win_length) // 2
    return np.pad(window, (left, n_fft - win_length - left)).astype(np.float32)


class LogMel:
    """A callable ``samples [n] float32 at options.sample_rate -> [T, n_mels] float32``.

    ``T = 1 + (n + 2 * (n_fft // 2) - n_fft) // hop_length``, i.e. ``1 + n // hop_length`` for
    an even ``n_fft``: frame ``t`` is centred on sample ``t * hop_length``, the clip being
    zero-padded by ``n_fft // 2`` at each end. Holds the window and filterbank, built once.
    """

    def __init__(self, options: AudioOptions) -> None:
        self.options = options
        self.window = hann_window(options.win_length or options.n_fft, options.n_fft)
        self.filterbank = mel_filterbank(
            options.sample_rate, options.n_fft, options.n_mels, options.f_min, options.f_max,
            options.mel_scale, options.mel_norm,
        )

    def power(self, samples: np.ndarray) -> np.ndarray:
        """The power spectrogram ``[T, n_fft // 2 + 1]`` (float32)."""
        o = self.options
        half = o.n_fft // 2
        padded = np.pad(samples.astype(np.float32, copy=False), (half, half))
        frames = sliding_window_view(padded, o.n_fft)[:: o.hop_length]
        spectrum = np.fft.rfft(frames * self.window, axis=1)
        return (spectrum.real**2 + spectrum.imag**2).astype(np.float32)

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        o = self.options
        # einsum, not "@": a matrix product this small is slower through a threaded BLAS
        mel = np.einsum("tf,fm->tm", self.power(samples), self.filterbank)
        logmel = np.log(mel + np.float32(o.log_offset))
        if o.normalize == "utterance":
            logmel = (logmel - logmel.mean()) / max(float(logmel.std()), _MIN_STD)
        elif o.normalize == "band":
            std = np.maximum(logmel.std(axis=0, keepdims=True), _MIN_STD)
            logmel = (logmel - logmel.mean(axis=0, keepdims=True)) / std
        return np.ascontiguousarray(logmel, dtype=np.float32)
