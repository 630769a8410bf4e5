"""Array transforms on sequences ``[T, C]`` (time first), in numpy.

Each function takes and returns float64 ``[T, C]`` arrays and is deterministic; the fitted
ones (:class:`ChannelStats`) are estimated on the training split by
:class:`mmcore.sequence.SequencePipeline`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

#: steps of each training sequence kept for the robust (median / IQR) statistics
ROBUST_STEPS_PER_SEQUENCE = 64


def resample_mean(x: np.ndarray, steps: int) -> np.ndarray:
    """``steps`` output steps, each the mean of the input steps of its bin.

    Bins split ``[0, T)`` evenly; a bin holds at least one step, so upsampling repeats
    steps (nearest neighbour).
    """
    t = x.shape[0]
    edges = np.linspace(0.0, t, steps + 1)
    starts = np.minimum(np.floor(edges[:-1]).astype(np.int64), t - 1)
    ends = np.maximum(np.ceil(edges[1:] - 1e-9).astype(np.int64), starts + 1)
    sums = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])
    return (sums[ends] - sums[starts]) / (ends - starts)[:, None]


def resample_linear(x: np.ndarray, steps: int) -> np.ndarray:
    """``steps`` steps linearly interpolated between the first and the last input step."""
    t = x.shape[0]
    if t == 1:
        return np.repeat(x, steps, axis=0)
    pos = np.linspace(0.0, t - 1, steps)
    lo = np.minimum(np.floor(pos).astype(np.int64), t - 2)
    frac = (pos - lo)[:, None]
    return x[lo] * (1.0 - frac) + x[lo + 1] * frac


def resample_poly(x: np.ndarray, ratio: float) -> np.ndarray:
    """Polyphase resampling by ``ratio`` (output rate / input rate) with scipy's
    anti-aliasing FIR low-pass; the ratio is approximated by a fraction with a denominator
    of at most 100."""
    from scipy.signal import resample_poly as _resample_poly

    frac = Fraction(ratio).limit_denominator(100)
    if frac.numerator == 0:
        raise ValueError(f"resample ratio {ratio} is too small (below 1/100)")
    if frac == 1:
        return x
    out = _resample_poly(x, frac.numerator, frac.denominator, axis=0)
    return out if out.shape[0] else x.mean(axis=0, keepdims=True)


def steps_for_factor(t: int, factor: float) -> int:
    """Output length when ``t`` steps are resampled by ``factor`` (at least 1)."""
    return max(1, math.ceil(t / factor - 1e-9))


def envelope(x: np.ndarray, kind: str, window: int, hop: int, demean: bool) -> np.ndarray:
    """RMS (``kind="rms"``) or mean absolute value (``"mav"``) over windows of ``window``
    steps every ``hop`` steps; a sequence shorter than ``window`` is one window."""
    if demean:
        x = x - x.mean(axis=0, keepdims=True)
    if x.shape[0] < window:
        window = x.shape[0]
    v = np.lib.stride_tricks.sliding_window_view(x, window, axis=0)[::hop]  # [N, C, window]
    if kind == "rms":
        return np.sqrt(np.mean(v * v, axis=-1))
    return np.mean(np.abs(v), axis=-1)


def differences(x: np.ndarray, order: int, append: bool) -> np.ndarray:
    """First (and, for ``order=2``, second) differences over time, 0 at the first step."""
    d1 = np.diff(x, axis=0, prepend=x[:1])
    parts = [d1] if order == 1 else [d1, np.diff(d1, axis=0, prepend=d1[:1])]
    return np.concatenate([x, *parts] if append else parts, axis=1)


def sequence_standardize(x: np.ndarray, method: str) -> np.ndarray:
    """Each channel by the sequence's own centre and spread (spread 0 -> only centred)."""
    centre, spread = _centre_spread(x, method)
    return (x - centre) / spread


def _centre_spread(x: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    if method == "robust":
        q1, med, q3 = np.percentile(x, [25.0, 50.0, 75.0], axis=0)
        spread = q3 - q1
        centre = med
    else:
        centre, spread = x.mean(axis=0), x.std(axis=0)
    return centre, np.where(spread > 0.0, spread, 1.0)


@dataclass
class ChannelStats:
    """Per-channel centre and scale fitted on training sequences; ``apply`` standardises.

    ``groups``: per-group statistics (group key -> stats) for ``standardize(by=...)``.
    """

    centre: np.ndarray
    scale: np.ndarray
    groups: dict[str, ChannelStats] | None = None

    def for_group(self, key: str | None) -> ChannelStats:
        """The group's statistics, or these (the whole training split's) for an unknown group."""
        if key is None or not self.groups or key not in self.groups:
            return self
        return self.groups[key]

    def apply(self, x: np.ndarray) -> np.ndarray:
        if x.shape[1] != self.centre.shape[0]:
            raise ValueError(
                f"got {x.shape[1]} channels at a fitted standardize step, expected "
                f"{self.centre.shape[0]} (as in the training data)"
            )
        return (x - self.centre) / self.scale


class StatsAccumulator:
    """Streams training sequences into :class:`ChannelStats`.

    ``"standard"``: exact mean and std over every step (Chan et al.'s pairwise update in
    float64); ``"robust"``: median and interquartile range of up to
    :data:`ROBUST_STEPS_PER_SEQUENCE` evenly spaced steps of each sequence.
    """

    def __init__(self, method: str) -> None:
        self.method = method
        self.count = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None
        self.samples: list[np.ndarray] = []

    def add(self, x: np.ndarray) -> None:
        if self.mean is not None and x.shape[1] != self.mean.shape[0]:
            raise ValueError(
                f"training sequences have {self.mean.shape[0]} and {x.shape[1]} channels at "
                "a standardize step; every sequence needs the same channels"
            )
        if self.method == "robust":
            keep = np.unique(np.linspace(0, x.shape[0] - 1, ROBUST_STEPS_PER_SEQUENCE).round())
            self.samples.append(x[keep.astype(np.int64)])
            self.mean = np.zeros(x.shape[1]) if self.mean is None else self.mean
            return
        n_b, mean_b = x.shape[0], x.mean(axis=0)
        m2_b = ((x - mean_b) ** 2).sum(axis=0)
        if self.mean is None or self.m2 is None:
            self.count, self.mean, self.m2 = n_b, mean_b, m2_b
            return
        delta, total = mean_b - self.mean, self.count + n_b
        self.mean = self.mean + delta * (n_b / total)
        self.m2 = self.m2 + m2_b + delta**2 * (self.count * n_b / total)
        self.count = total

    def result(self) -> ChannelStats:
        if self.mean is None:
            raise ValueError("no training sequences to fit a standardize step on")
        if self.method == "robust":
            centre, scale = _centre_spread(np.concatenate(self.samples), "robust")
            return ChannelStats(centre, scale)
        std = np.sqrt((self.m2 if self.m2 is not None else 0.0) / max(self.count, 1))
        return ChannelStats(self.mean, np.where(std > 0.0, std, 1.0))
