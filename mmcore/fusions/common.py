"""Building blocks the built-in fusions share; public, so research fusions can use them too.

Every helper here honours ``Features.present`` (and ``Features.mask`` for sequences): values of
absent samples and padded steps never reach the result, whatever they hold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from mmcore.batch import Features
from mmcore.layers import sinusoidal_positions  # noqa: F401 (a fusion helper, docs/fusion.md)


def presence(features: Mapping[str, Features], modalities: Sequence[str]) -> Tensor:
    """``[B, M]`` bool: whether each sample has each modality (columns in ``modalities`` order)."""
    return torch.stack([features[m].present.bool() for m in modalities], dim=1)


def step_mask(features: Features) -> Tensor:
    """``[B, T]`` bool of the steps that count: real steps of present samples only."""
    values = features.values
    if features.mask is None:
        mask = torch.ones(values.shape[:2], dtype=torch.bool, device=values.device)
    else:
        mask = features.mask.bool()
    return mask & features.present.bool().unsqueeze(1)


def zero_absent(x: Tensor, keep: Tensor) -> Tensor:
    """``x`` with the rows (or steps) where ``keep`` is false set to zero.

    ``keep`` has ``x``'s leading dimensions (``[B]`` or ``[B, T]``). ``torch.where`` rather than
    a product, so that inf/NaN in discarded entries cannot leak through as NaN.
    """
    keep = keep.bool().view(*keep.shape, *([1] * (x.dim() - keep.dim())))
    return torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))


def masked_softmax(scores: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """Softmax of ``scores`` over the entries where ``mask`` is true; zeros elsewhere.

    A slice with no true entry gives all zeros (not NaN), so "every modality absent" yields
    weights that sum to 0 instead of poisoning the batch.
    """
    mask = mask.bool().expand_as(scores)
    filled = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(filled, dim=dim)
    return torch.where(mask, weights, torch.zeros((), dtype=weights.dtype, device=weights.device))


def with_one(x: Tensor) -> Tensor:
    """``[..., D]`` -> ``[..., D + 1]`` with a constant 1 appended (the tensor-fusion trick)."""
    return torch.cat([x, x.new_ones(*x.shape[:-1], 1)], dim=-1)


def true_first(mask: Tensor) -> Tensor:
    """``[B, N]`` indices that put each row's ``True`` positions first, in their order, then
    its ``False`` ones in theirs (a stable partition). Computed with a plain sort on unique
    keys, which every exporter knows (ONNX has no stable sort)."""
    n = mask.shape[1]
    key = (~mask).to(torch.int64) * n + torch.arange(n, device=mask.device)
    return torch.argsort(key, dim=1)


def resample(features: Features, length: int) -> tuple[Tensor, Tensor]:
    """Linearly interpolate each row's real steps onto ``length`` evenly spaced points.

    ``features.values`` is ``[B, T, D]`` (a pooled ``[B, D]`` is treated as one step). Row ``b``
    with ``n_b`` real steps (``step_mask``) is stretched or squeezed so that its first and last
    real steps land on output steps 0 and ``length - 1``; one real step is repeated. Padded
    steps and absent rows are never read.

    Returns ``(values [B, length, D], valid [B])``; rows without a real step are zero and not
    ``valid``.
    """
    if length < 1:
        raise ValueError(f"resample length must be at least 1, got {length}")
    values = features.values if features.is_sequence else features.values.unsqueeze(1)
    mask = step_mask(Features(values, features.present, features.mask))
    b, t, d = values.shape
    count = mask.sum(dim=1)  # [B]
    # Real steps first, in time order, so that index i is the row's i-th real step.
    order = true_first(mask)
    packed = values.gather(1, order.unsqueeze(-1).expand(b, t, d))
    # Index arithmetic in float32 even under half precision, where step numbers above 256
    # are not exact and a rounded-up position would index past the last real step.
    last = (count - 1).clamp_min(0).unsqueeze(1)  # [B, 1]
    grid = torch.linspace(0.0, 1.0, length, device=values.device, dtype=torch.float32)
    pos = grid.unsqueeze(0) * last.to(torch.float32)  # [B, L] fractional index into real steps
    low = torch.minimum(pos.floor().long(), last)
    high = torch.minimum(low + 1, last)
    frac = (pos - low.to(torch.float32)).unsqueeze(-1).to(values.dtype)

    def take(index: Tensor) -> Tensor:
        return packed.gather(1, index.unsqueeze(-1).expand(b, length, d))

    out = take(low) * (1 - frac) + take(high) * frac
    valid = count > 0
    return zero_absent(out, valid), valid


class Projection(nn.Module):
    """One ``Linear(D_m, size)`` per modality, to bring every modality to a common size.

    ``forward(features)`` pools sequences (masked mean) and returns ``[B, M, size]`` in
    ``modalities`` order, with absent rows exactly zero (the bias is not added to them).
    ``project(name, features)`` maps one modality keeping its time axis, padded steps and absent
    rows zeroed.
    """

    def __init__(self, input_sizes: Mapping[str, int], size: int) -> None:
        super().__init__()
        self.modalities = sorted(input_sizes)
        self.size = int(size)
        self.linear = nn.ModuleDict({m: nn.Linear(input_sizes[m], size) for m in self.modalities})

    def project(self, name: str, features: Features) -> Tensor:
        """``[B, size]`` or ``[B, T, size]``: one modality projected, ignored entries zero."""
        out = self.linear[name](features.values)
        keep = step_mask(features) if features.is_sequence else features.present
        return zero_absent(out, keep)

    def forward(self, features: Mapping[str, Features]) -> Tensor:
        outs = [
            zero_absent(self.linear[m](features[m].pooled()), features[m].present)
            for m in self.modalities
        ]
        return torch.stack(outs, dim=1)
