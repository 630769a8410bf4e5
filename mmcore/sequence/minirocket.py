"""MiniRocket in torch: fixed dilated convolutions whose biases are fitted on the training split,
proportion-of-positive-values (PPV) features, then a learned projection.

MiniRocket (Dempster, Schmidt and Webb, KDD 2021) convolves every sequence with the 84 kernels
of length 9 whose weights are -1 except at three of the nine positions (2), at a range of
dilations, and counts how often each output exceeds a bias taken from quantiles of the
convolution of a random training sequence. On small data sets it is the classical baseline a
reviewer runs first; here it is an :class:`~mmcore.encoder.Encoder` like any other, so it
trains end to end behind a fusion, runs on GPU and in several processes, and exports to ONNX.

The transform is the one of aeon's ``MiniRocket`` (``aeon.transformations.collection.
convolution_based``), tested against it: the same dilations, features per dilation, channel
combinations (several channels summed, at most 9) and alternating padding. Sequences of
different lengths are padded to one batch with a step mask: each sequence's features are those
of the sequence alone (zero padding outside it, "valid" features over its own interior).

:func:`fit_minirocket` fits :class:`~mmcore.sequence.minirocket_ppv.MiniRocketParameters`
(numpy, on ``[T, C]`` arrays); :class:`~mmcore.sequence.minirocket_ppv.MiniRocketFeatures`
computes the features from them, and :class:`MiniRocketEncoder` standardises and projects them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from mmcore.batch import Features, ModalityBatch
from mmcore.collate import pad_sequences
from mmcore.encoder import Encoder, inputs_recur
from mmcore.layers import capturing, dropout_layer
from mmcore.sequence.encoder import sequence_input
from mmcore.sequence.minirocket_ppv import (
    NUM_KERNELS,
    MiniRocketFeatures,
    MiniRocketParameters,
    kernel_weights,
)

#: training sequences a modality fits MiniRocket on (a seeded random subset when it has more)
FIT_ROWS = 2048
#: most memory the encoder spends remembering features of sequences it has seen (on the CPU)
CACHE_BYTES = 512 * 2**20


def fit_dilations(
    length: int, num_features: int, max_dilations: int
) -> tuple[list[int], list[int]]:
    """Dilations (exponentially spaced up to ``(length - 1) / 8``) and features per dilation,
    as in MiniRocket: ``num_features // 84`` features per kernel spread over the dilations."""
    per_kernel = max(1, num_features // NUM_KERNELS)
    true_max = min(per_kernel, max_dilations)
    multiplier = per_kernel / true_max
    max_exponent = math.log2(max(length - 1, 1) / 8) if length > 9 else 0.0
    dilations, counts = np.unique(
        np.logspace(0, max(max_exponent, 0.0), true_max, base=2).astype(np.int32),
        return_counts=True,
    )
    per_dilation = (counts * multiplier).astype(np.int32)
    remainder = per_kernel - int(per_dilation.sum())
    i = 0
    while remainder > 0:
        per_dilation[i] += 1
        remainder -= 1
        i = (i + 1) % len(per_dilation)
    return [int(d) for d in dilations], [int(n) for n in per_dilation]


def quantiles(n: int) -> np.ndarray:
    """MiniRocket's low-discrepancy quantiles: ``(i * golden ratio) mod 1`` for i = 1..n."""
    return np.array([(i * ((math.sqrt(5) + 1) / 2)) % 1 for i in range(1, n + 1)],
                    dtype=np.float32)


def _conv_outputs(x: np.ndarray, dilation: int, channels: Sequence[int], kernel: int) -> np.ndarray:
    """One kernel's convolution of one ``[T, C]`` sequence, summed over ``channels``: ``[T]``."""
    sub = x[:, list(channels)].sum(axis=1, dtype=np.float64)
    t = len(sub)
    out = np.zeros(t)
    weights = kernel_weights()[kernel]
    for g in range(9):
        shift = (g - 4) * dilation
        lo, hi = max(0, -shift), min(t, t - shift)
        if lo < hi:
            out[lo:hi] += weights[g] * sub[lo + shift : hi + shift]
    return out


def fit_minirocket(
    arrays: Sequence[np.ndarray], num_features: int = 10_000, max_dilations: int = 32,
    seed: int = 0,
) -> MiniRocketParameters:
    """Fit MiniRocket on training sequences ``[T, C]`` (lengths may differ).

    Dilations come from the longest sequence; each kernel/dilation pair sums a random subset of
    channels (``2 ** U(0, log2(min(C, 9) + 1))`` of them) and takes its biases from quantiles of
    its convolution of one random training sequence. The features' mean and scale are then
    measured on the same sequences (give at most :data:`FIT_ROWS` of them: the fit transforms
    every one).
    """
    if not arrays:
        raise ValueError("minirocket: no training sequences to fit")
    rng = np.random.RandomState(seed)
    n_channels = int(arrays[0].shape[1])
    dilations, per_dilation = fit_dilations(max(len(a) for a in arrays), num_features,
                                            max_dilations)
    combos = NUM_KERNELS * len(dilations)
    max_exponent = math.log2(min(n_channels, 9) + 1)
    counts = (2 ** rng.uniform(0, max_exponent, combos)).astype(np.int64)
    channels = [sorted(int(c) for c in rng.choice(n_channels, n, replace=False)) for n in counts]
    q = quantiles(NUM_KERNELS * sum(per_dilation))
    biases: list[float] = []
    start = 0
    for j, (d, n) in enumerate(zip(dilations, per_dilation, strict=True)):
        for k in range(NUM_KERNELS):
            x = arrays[rng.randint(len(arrays))]
            conv = _conv_outputs(np.asarray(x, dtype=np.float32), d, channels[j * NUM_KERNELS + k],
                                 k)
            biases.extend(float(b) for b in np.quantile(conv, q[start : start + n]))
            start += n
    params = MiniRocketParameters(
        input_channels=n_channels, dilations=dilations, features_per_dilation=per_dilation,
        channels=channels, biases=biases, mean=[0.0] * len(biases), scale=[1.0] * len(biases),
    )
    feats = transform_arrays(MiniRocketFeatures(params), arrays)
    std = feats.std(axis=0)
    params.mean = [float(v) for v in feats.mean(axis=0)]
    params.scale = [float(v) if v > 1e-8 else 1.0 for v in std]
    return params


def transform_arrays(features: MiniRocketFeatures, arrays: Sequence[np.ndarray],
                     batch_size: int = 64) -> np.ndarray:
    """PPV features ``[N, F]`` of ``[T, C]`` arrays, batched by similar length."""
    out = np.zeros((len(arrays), features.num_features), dtype=np.float32)
    order = sorted(range(len(arrays)), key=lambda i: len(arrays[i]))
    with torch.no_grad():
        for s in range(0, len(order), batch_size):
            chunk = order[s : s + batch_size]
            batch = pad_sequences([np.asarray(arrays[i], dtype=np.float32) for i in chunk])
            out[chunk] = features(batch.values, batch.mask).numpy()
    return out


class MiniRocketEncoder(Encoder):
    """MiniRocket features, standardised with the training split's statistics, then dropout
    and a learned linear layer to ``output_size`` (the features themselves when ``None``).

    Input: a sequence batch ``[B, T, C]`` (frames ``[B, T, K, D]`` are flattened) with its step
    mask. Output: pooled ``[B, D]``; rows not ``present`` are zeros.
    """

    def __init__(self, params: MiniRocketParameters, output_size: int | None = None,
                 dropout: float = 0.0) -> None:
        features = MiniRocketFeatures(params)
        super().__init__(output_size or features.num_features)
        self.input_size = params.input_channels
        self.rocket = features
        self.register_buffer("mean", torch.tensor(params.mean, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(params.scale, dtype=torch.float32))
        self.drop = dropout_layer(dropout)
        self.proj = nn.Linear(features.num_features, output_size) if output_size else None
        self._cache: dict[bytes, Tensor] = {}
        self._cache_bytes = 0
        self._cache_basis: list[Tensor] = []

    def _check_cache(self) -> None:
        """Forget the remembered features when what they were computed with changed: the
        kernels, biases and channel choices (other weights loaded, a dtype conversion, a
        change in place by any route). Compared by value at every call (a few small tensors),
        so loading the very same values (the end of training loads the best weights) or an
        average's copy keeps them."""
        rocket = self.rocket
        fixed = [rocket.weight, rocket.biases, rocket.channel_index, rocket.valid_only]
        if len(self._cache_basis) == len(fixed) and all(
                a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
                for a, b in zip(fixed, self._cache_basis, strict=True)):
            return
        self._cache.clear()
        self._cache_bytes = 0
        self._cache_basis = [t.detach().clone() for t in fixed]

    def ppv(self, x: Tensor, mask: Tensor) -> Tensor:
        """The PPV features of a batch, reusing those of sequences seen before.

        The features are fixed, so on the CPU, where they cost most of an epoch, the
        features of each training sequence are remembered (by a digest of its real steps, up
        to :data:`CACHE_BYTES`): later epochs compute only sequences not seen yet (augmented
        ones). Only training and the trainer's validation
        (:func:`~mmcore.encoder.recurring_inputs`) fill the memory (otherwise in eval mode it
        is read, not grown, so a server does not accumulate its requests); exported and
        accelerator graphs compute the features every time.
        """
        if x.device.type != "cpu" or capturing():
            return self.rocket(x, mask)
        self._check_cache()
        counts = mask.sum(dim=1)
        lengths = counts.tolist()
        # a row's features are reused only when its mask is a plain prefix of true steps
        steps = torch.arange(mask.shape[1], device=mask.device)
        prefix = (mask == (steps < counts.unsqueeze(1))).all(dim=1).tolist()
        # each row's steps up to its last real one (more than its count where the mask has gaps)
        ends = torch.where(mask, steps + 1, 0).amax(dim=1).tolist() if mask.shape[1] else lengths
        # rows read as numpy, no torch call per row (bfloat16, which numpy lacks, as its bits)
        values = (x.detach().view(torch.int16) if x.dtype == torch.bfloat16
                  else x.detach()).numpy()
        keys = [
            hashlib.blake2b(values[i, :n].tobytes() + str((n, x.dtype)).encode(),
                            digest_size=16).digest()
            if plain else None
            for i, (n, plain) in enumerate(zip(lengths, prefix, strict=True))
        ]
        todo = [i for i, k in enumerate(keys) if k is None or k not in self._cache]
        out = torch.empty(x.shape[0], self.rocket.num_features, dtype=x.dtype)
        if todo:
            index = torch.tensor(todo)
            span = max(1, max(ends[i] for i in todo))
            fresh = self.rocket(x[index, :span], mask[index, :span])
            out[index] = fresh
            for row, i in enumerate(todo):
                key = keys[i]
                if key is not None and inputs_recur(self) and self._cache_bytes < CACHE_BYTES:
                    self._cache[key] = fresh[row].clone()
                    self._cache_bytes += fresh[row].numel() * fresh.element_size()
        computed = set(todo)
        kept = [i for i in range(len(keys)) if i not in computed]
        if kept:  # one copy for all the remembered rows
            out[torch.tensor(kept)] = torch.stack([self._cache[keys[i]] for i in kept])
        return out

    def forward(self, batch: ModalityBatch) -> Features:
        x, mask = sequence_input(batch, self.input_size, "minirocket encoder")
        with torch.no_grad():
            h = (self.ppv(x, mask) - self.mean.to(x.dtype)) / self.scale.to(x.dtype)
        if self.drop is not None:
            h = self.drop(h)
        if self.proj is not None:
            h = self.proj(h)
        return self.features(h, None, batch)
