"""The tensors that flow between stages: collated modality batches and encoder features.

Data flows one way: columns -> ``Modality.preprocess`` -> ``Modality.collate`` (a
:class:`ModalityBatch`) -> ``Encoder`` (a :class:`Features`) -> ``Fusion`` -> ``Head``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch
from torch import Tensor


def _apply(obj, fn):
    """Return a copy of a tensor dataclass with ``fn`` applied to every tensor field."""
    changes = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, Tensor):
            changes[f.name] = fn(value)
        elif isinstance(value, dict):
            changes[f.name] = {k: fn(v) if isinstance(v, Tensor) else v for k, v in value.items()}
    return replace(obj, **changes)


@dataclass
class ModalityBatch:
    """One modality's collated batch.

    Attributes:
        values: padded data, first dimension ``B``. Sequence data is ``[B, T, ...]``.
        present: ``[B]`` bool, ``False`` where a sample lacks this modality (its values are
            zeros and must not influence the output).
        mask: ``[B, T]`` bool, ``True`` at real (non-padding) steps; ``None`` for data
            without a time axis.
        extra: further tensors a modality needs (e.g. token offsets), each with first dim ``B``.
        full: ``True`` when every sample is present and every step real (no padding), as
            the collate function that built the batch knows for free; ``None`` (the default)
            when not stated: :meth:`is_full` then works it out from the tensors. Encoders use
            it to skip masking work that would change nothing. A batch built with other
            ``present`` or ``mask`` tensors must not copy it.
    """

    values: Tensor
    present: Tensor
    mask: Tensor | None = None
    extra: dict[str, Tensor] = field(default_factory=dict)
    full: bool | None = None

    def is_full(self) -> bool:
        """Whether every sample is present and every step real: :attr:`full` if stated, else
        read from ``present`` and ``mask`` once (a device sync) and remembered."""
        if self.full is None:
            full = bool(self.present.all())
            if full and self.mask is not None:
                full = bool(self.mask.all())
            self.full = full
        return self.full

    def to(self, device: torch.device | str, non_blocking: bool = False) -> ModalityBatch:
        return _apply(self, lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> ModalityBatch:
        return _apply(self, lambda t: t.pin_memory())

    def __len__(self) -> int:
        return self.values.shape[0]


@dataclass
class Features:
    """An encoder's output for one modality.

    Attributes:
        values: ``[B, D]`` (pooled) or ``[B, T, D]`` (a sequence).
        present: ``[B]`` bool, ``False`` where the sample lacks the modality; such rows are zero.
        mask: ``[B, T]`` bool for sequences (``True`` = real step); ``None`` when pooled.
        full: ``True`` when every row is present (and, for a sequence, every step real), as
            the encoder knew from its batch; ``None`` when not stated. Only a shortcut:
            :meth:`pooled` skips its masking when it is ``True``.
    """

    values: Tensor
    present: Tensor
    mask: Tensor | None = None
    full: bool | None = None

    @property
    def is_sequence(self) -> bool:
        return self.values.dim() == 3

    @property
    def size(self) -> int:
        return self.values.shape[-1]

    def pooled(self) -> Tensor:
        """``[B, D]``: the masked mean over time for sequences, the values themselves otherwise.

        Rows whose modality is absent are zero.
        """
        if self.full:
            return self.values.mean(dim=1) if self.is_sequence else self.values
        if not self.is_sequence:
            zero = torch.zeros((), dtype=self.values.dtype, device=self.values.device)
            return torch.where(self.present.unsqueeze(-1), self.values, zero)
        return masked_mean(self.values, self.mask, self.present)

    def absent(self) -> Features:
        """These features as an encoder gives them for a batch where every row lacks the
        modality: zero values, ``present`` and ``mask`` all false (what hiding the modality's
        input gives, without running the encoder again)."""
        mask = None if self.mask is None else torch.zeros_like(self.mask)
        return Features(torch.zeros_like(self.values), torch.zeros_like(self.present), mask,
                        full=False)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Features:
        return _apply(self, lambda t: t.to(device, non_blocking=non_blocking))


def masked_mean(values: Tensor, mask: Tensor | None, present: Tensor | None = None) -> Tensor:
    """Mean of ``values [B, T, D]`` over the steps where ``mask [B, T]`` is true.

    Rows with no valid step, or not ``present``, give zeros (never NaN).
    """
    if mask is None:
        mask = torch.ones(values.shape[:2], dtype=torch.bool, device=values.device)
    if present is not None:
        mask = mask & present.unsqueeze(1)
    keep = mask.unsqueeze(-1)
    # where(), not a product: NaN/inf in padded steps must not leak into the mean
    total = torch.where(keep, values, torch.zeros((), dtype=values.dtype, device=values.device))
    count = keep.sum(dim=1).clamp_min(1).to(values.dtype)
    return total.sum(dim=1) / count


@dataclass
class Batch:
    """A full training batch: every modality's :class:`ModalityBatch` and every head's target.

    Attributes:
        inputs: modality name -> collated batch.
        targets: head name -> target tensor (``[B]`` class indices, ``[B, C]`` multi-hot or
            ``[B]``/``[B, K]`` regression values). Empty at prediction time.
        index: ``[B]`` row indices in the source split (for reports and bad-row messages).
    """

    inputs: dict[str, ModalityBatch]
    targets: dict[str, Tensor] = field(default_factory=dict)
    index: Tensor | None = None

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return Batch(
            inputs={k: v.to(device, non_blocking) for k, v in self.inputs.items()},
            targets={k: v.to(device, non_blocking=non_blocking) for k, v in self.targets.items()},
            index=self.index,
        )

    def pin_memory(self) -> Batch:
        return Batch(
            inputs={k: v.pin_memory() for k, v in self.inputs.items()},
            targets={k: v.pin_memory() for k, v in self.targets.items()},
            index=self.index,
        )

    def __len__(self) -> int:
        first = next(iter(self.inputs.values()), None)
        return 0 if first is None else len(first)
