"""MiniRocket's fitted parameters and its transform in torch: ``[B, T, C]`` sequences with a
step mask -> ``[B, F]`` proportion-of-positive-values features. The kernels, channel choices
and biases that :func:`mmcore.sequence.minirocket.fit_minirocket` fitted
(:class:`MiniRocketParameters`) are buffers of :class:`MiniRocketFeatures`, so the transform
runs on any device and is exported with the model.

Each feature must be the same float whatever the batch: the biases are quantiles of the
training sequences' own convolutions, so a feature hangs on the last bit of these sums. They
are taken element by element in a fixed order, never by a matrix product or convolution, whose
blocking depends on the shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from itertools import combinations
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mmcore.layers import capturing

#: the three positions (of 9) weighted 2 in each of the 84 kernels; the other six weigh -1
KERNEL_INDICES = np.array(list(combinations(range(9), 3)), dtype=np.int64)
NUM_KERNELS = len(KERNEL_INDICES)  # 84
KERNEL_LENGTH = 9


def kernel_weights() -> np.ndarray:
    """``[84, 9]`` float32: -1 everywhere, 2 at each kernel's three positions."""
    w = -np.ones((NUM_KERNELS, 9), dtype=np.float32)
    for k, idx in enumerate(KERNEL_INDICES):
        w[k, idx] = 2.0
    return w


def _copied(value: Any) -> Any:
    """``value`` with its lists (one level of nesting) copied."""
    if isinstance(value, list):
        return [list(v) if isinstance(v, list) else v for v in value]
    return value


@dataclass
class MiniRocketParameters:
    """Everything MiniRocket fits, as plain lists (saved as JSON with the modality's state).

    ``channels[j * 84 + k]``: the channels summed by kernel ``k`` at dilation ``j``.
    ``biases``: one per feature, in feature order (dilation, then kernel, then feature).
    ``mean``/``scale``: the features' training mean and standard deviation (1 where constant).
    """

    input_channels: int
    dilations: list[int]
    features_per_dilation: list[int]
    channels: list[list[int]]
    biases: list[float]
    mean: list[float]
    scale: list[float]

    @property
    def num_features(self) -> int:
        return NUM_KERNELS * sum(self.features_per_dilation)

    def state(self) -> dict[str, Any]:
        """The parameters as JSON-able values, lists copied (``dataclasses.asdict`` copies
        each number one by one: 0.09 s for 10,000 features)."""
        return {f.name: _copied(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_state(cls, state: Any) -> MiniRocketParameters:
        """Read :meth:`state`'s output back; ``ValueError`` naming what is malformed."""
        if not isinstance(state, dict):
            raise ValueError(f"minirocket state must be an object, got {type(state).__name__}")
        try:
            params = cls(**state)
        except TypeError as exc:
            raise ValueError(f"minirocket state: {exc}") from None
        n_dil, n = len(params.dilations), params.num_features
        checks = [
            (n_dil > 0 and len(params.features_per_dilation) == n_dil, "one feature count per "
             "dilation"),
            (len(params.channels) == NUM_KERNELS * n_dil, f"{NUM_KERNELS} channel lists per "
             "dilation"),
            (all(c and all(0 <= i < params.input_channels for i in c) for c in params.channels),
             f"channel indices below input_channels={params.input_channels}"),
            (len(params.biases) == n and len(params.mean) == n and len(params.scale) == n,
             f"{n} biases, means and scales"),
        ]
        for ok, expected in checks:
            if not ok:
                raise ValueError(f"minirocket state: expected {expected}")
        return params


class MiniRocketFeatures(nn.Module):
    """``[B, T, C]`` sequences with a ``[B, T]`` step mask -> ``[B, F]`` PPV features in [0, 1].

    Nothing here is trained: kernels, channel choices and biases are buffers (saved with the
    model, exported with it).
    """

    def __init__(self, params: MiniRocketParameters) -> None:
        super().__init__()
        self.input_channels = params.input_channels
        self.dilations = list(params.dilations)
        self.features_per_dilation = list(params.features_per_dilation)
        self.num_features = params.num_features
        self.register_buffer("weight", torch.from_numpy(kernel_weights()).unsqueeze(1))
        # each kernel's channels as a 0/1 mask: not read by forward, kept in the state dict so
        # that checkpoints saved with it load as they are
        combos = torch.zeros(len(self.dilations), NUM_KERNELS, params.input_channels)
        for i, chans in enumerate(params.channels):
            combos[i // NUM_KERNELS, i % NUM_KERNELS, chans] = 1.0
        self.register_buffer("combos", combos)
        # each kernel's channels as indices (padded with index C, a zero channel appended in
        # forward): summing a fixed handful of channels in a fixed order gives every sequence
        # the same float result whatever its batch (a matrix product's blocking does not, and
        # a bias fitted as a quantile of these very values makes PPV sensitive to the last bit)
        width = max(1, max(len(chans) for chans in params.channels))
        index = torch.full((len(self.dilations), NUM_KERNELS, width), params.input_channels,
                           dtype=torch.long)
        for i, chans in enumerate(params.channels):
            index[i // NUM_KERNELS, i % NUM_KERNELS, : len(chans)] = torch.tensor(sorted(chans))
        self.register_buffer("channel_index", index, persistent=False)
        biases = torch.tensor(params.biases, dtype=torch.float32)
        self.register_buffer("biases", biases)
        # aeon alternates the "valid" (no padding) features: kernel k at dilation j when j + k
        # is odd
        parity = [[(j + k) % 2 == 1 for k in range(NUM_KERNELS)]
                  for j in range(len(self.dilations))]
        self.register_buffer("valid_only", torch.tensor(parity, dtype=torch.bool))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        b, t, c = x.shape
        keep = mask.to(x.dtype)
        xt = (x * keep.unsqueeze(-1)).transpose(1, 2)  # [B, C, T]
        padded = torch.cat([xt, xt.new_zeros(b, 1, t)], dim=1)  # channel C: zeros
        lengths = mask.sum(dim=1, keepdim=True)  # [B, 1]
        steps = torch.arange(t, device=x.device).unsqueeze(0)  # [1, T]
        weight = self.weight.to(x.dtype).view(NUM_KERNELS, KERNEL_LENGTH, 1)
        captured = capturing()  # asked once, not at each of the dilations' taps
        feats, start = [], 0
        for j, (d, n) in enumerate(zip(self.dilations, self.features_per_dilation, strict=True)):
            # a kernel summed over its channels is the kernel of their sum (convolution is
            # linear): add each kernel's channels first, then convolve once per kernel. Both
            # as plain additions in a fixed order, element by element: the biases are
            # quantiles of the training sequences' own convolutions, so a sequence's PPV
            # hangs on the last bit of these sums, which must not depend on its batch (a
            # matrix product's or convolution's blocking does)
            index = self.channel_index[j]  # [84, width]
            summed = padded.index_select(1, index[:, 0])  # [B, 84, T]
            for w in range(1, index.shape[1]):  # one [B, 84, T] read at a time
                summed += padded.index_select(1, index[:, w])
            pad = 4 * d
            wide = nn.functional.pad(summed, (pad, pad))
            conv = _tap(wide, 0, t, steps, captured) * weight[:, 0]
            for m in range(1, KERNEL_LENGTH):
                conv = conv + _tap(wide, m * d, t, steps, captured) * weight[:, m]
            inner = mask & (steps >= pad) & (steps < lengths - pad)
            # a sequence too short for a valid window at this dilation uses all its steps
            # (logical operators, not torch.where: ONNX Runtime has no boolean Where)
            inner = inner | (mask & ~inner.any(dim=1, keepdim=True))
            valid = self.valid_only[j].view(1, NUM_KERNELS, 1)
            where = (valid & inner.unsqueeze(1)) | (~valid & mask.unsqueeze(1))  # [B, 84, T]
            bias = self.biases[start : start + NUM_KERNELS * n].view(1, NUM_KERNELS, n, 1)
            # steps outside ``where`` pass no bias
            conv = conv.masked_fill(~where, float("-inf"))
            hits = _count(conv.unsqueeze(2) > bias.to(x.dtype), captured)
            count = where.sum(dim=-1).clamp_min(1).unsqueeze(2).to(x.dtype)
            feats.append((hits.to(x.dtype) / count).reshape(b, NUM_KERNELS * n))
            start += NUM_KERNELS * n
        return torch.cat(feats, dim=1)


def _tap(wide: Tensor, start: int, t: int, steps: Tensor, captured: bool) -> Tensor:
    """``wide[:, :, start : start + t]``; taken by index where a graph is captured: a slice's
    bounds on a dynamic time axis cost the exporter symbolic shape work (exporting the
    av_digits model's transform took 54-56 CPU s with slices, 39-46 s by index), and ONNX
    Runtime runs both graphs at the same speed (alternating runs, 1 to 40 rows)."""
    if captured:
        return wide.index_select(2, steps[0] + start)
    return wide[:, :, start : start + t]


def _count(above: Tensor, captured: bool) -> Tensor:
    """``above.sum(-1)``, exact: 16-bit integer sums in eager mode (4x faster than a bool
    tensor's int64 sum), float32 0/1 sums where a graph is exported or compiled."""
    if captured:
        return above.to(torch.float32).sum(dim=-1)  # exact up to 2**24 steps
    small = above.shape[-1] <= torch.iinfo(torch.int16).max
    return above.view(torch.uint8).sum(dim=-1, dtype=torch.int16 if small else torch.int32)
