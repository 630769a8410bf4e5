"""Raw audio values -> mono float32 waveforms at a chosen rate (soundfile decodes, soxr resamples).

Accepted values: a file path (relative to the data root) or encoded bytes of anything
libsndfile reads (WAV, FLAC, OGG, MP3...); a ``datasets`` Audio value: an
``{"array": ..., "sampling_rate": ...}`` dict, an ``{"bytes": ..., "path": ...}`` dict
(``Audio(decode=False)``) or a decoder with ``get_all_samples()`` (``datasets`` >= 4); or
samples as a numpy array / list, taken to be at the modality's ``sample_rate`` already.
Every failure is a ``ValueError`` that says what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import soxr

from mmcore.io import check_finite, open_binary

#: the highest sample rate accepted (soxr hangs on absurd ones)
MAX_RATE = 10_000_000
#: the most samples a clip may have once resampled (512 MiB of float32)
MAX_RESAMPLED = 1 << 27
#: Full scale of signed integer PCM, so integer samples map to [-1, 1) like soundfile's floats.
_FULL_SCALE = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0,
               np.dtype(np.int8): 128.0}


def load_waveform(value: Any, root: Path | None, default_rate: int) -> tuple[np.ndarray, int]:
    """One raw audio value -> ``(samples [n] float32 mono, sample rate in Hz)``."""
    if isinstance(value, dict) and "array" in value:
        rate = value.get("sampling_rate")
        if not isinstance(rate, int | np.integer) or not 0 < rate <= MAX_RATE:
            raise ValueError(f"audio dict needs a positive integer 'sampling_rate' of at most "
                             f"{MAX_RATE} Hz, got {rate!r}")
        return _mono(value["array"]), int(rate)
    if hasattr(value, "get_all_samples"):
        samples = value.get_all_samples()
        return _mono(np.asarray(samples.data)), int(samples.sample_rate)
    if isinstance(value, str | Path | bytes | bytearray | memoryview | dict):
        stream, where = open_binary(value, root)
        with stream:
            try:
                data, rate = soundfile.read(stream, dtype="float32", always_2d=True)
            except (soundfile.LibsndfileError, RuntimeError, TypeError) as exc:
                # libsndfile's own words, without the stream object's repr that str(exc) adds
                reason = getattr(exc, "error_string", None) or str(exc)
                raise ValueError(
                    f"cannot decode audio {where}: {reason} (expected a file libsndfile reads: "
                    "WAV, FLAC, OGG, MP3...)"
                ) from None
        if data.shape[0] == 0:
            raise ValueError(f"empty audio: {where} has no samples")
        return check_finite(data.mean(axis=1, dtype=np.float32)), int(rate)
    if isinstance(value, np.ndarray | list | tuple):
        return _mono(value), default_rate
    raise ValueError(
        "expected an audio path, encoded bytes, a {'array', 'sampling_rate'} or "
        f"{{'bytes', 'path'}} dict, or a sample array, got {type(value).__name__}"
    )


def _mono(value: Any) -> np.ndarray:
    """Samples ``[n]``, ``[channels, n]`` or ``[n, channels]`` (the shorter axis is taken as
    channels) -> float32 ``[n]``, channels averaged, integer PCM scaled to [-1, 1)."""
    try:
        arr = np.asarray(value)
    except ValueError as exc:
        raise ValueError(f"audio samples are not a numeric array: {exc}") from None
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"expected numeric audio samples, got dtype {arr.dtype}")
    if arr.size == 0:
        raise ValueError("empty audio: no samples")
    scale = _FULL_SCALE.get(arr.dtype)
    samples = arr.astype(np.float32)
    if scale is not None:
        samples /= scale
    if samples.ndim == 2:
        samples = samples.mean(axis=0 if arr.shape[0] <= arr.shape[1] else 1)
    elif samples.ndim != 1:
        raise ValueError(
            f"expected audio samples of shape [n], [channels, n] or [n, channels], got shape "
            f"{tuple(arr.shape)}"
        )
    return check_finite(samples)


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """``samples`` at ``rate`` Hz -> at ``target`` Hz (soxr, high quality; unchanged if equal)."""
    if rate == target:
        return samples
    if not 0 < rate <= MAX_RATE:  # soxr hangs on absurd rates
        raise ValueError(f"sample rate {rate} Hz is outside 1 to {MAX_RATE} Hz")
    if samples.size * (target / rate) > MAX_RESAMPLED:
        raise ValueError(f"audio of {samples.size} samples at {rate} Hz would be "
                         f"{samples.size * target // rate} samples at {target} Hz, more than "
                         f"the {MAX_RESAMPLED} allowed")
    out = soxr.resample(samples, rate, target, quality="HQ")
    if out.size == 0:
        raise ValueError(
            f"audio of {samples.size} samples at {rate} Hz is too short to resample to {target} Hz"
        )
    return np.ascontiguousarray(out, dtype=np.float32)
