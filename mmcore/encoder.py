"""The ``Encoder`` interface: one modality's collated batch in, features out."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from mmcore.batch import Features, ModalityBatch, masked_mean

_RECURRING: contextvars.ContextVar[bool] = contextvars.ContextVar("mmcore_recurring",
                                                                  default=False)


@contextlib.contextmanager
def recurring_inputs() -> Iterator[None]:
    """Inside it, the inputs an encoder sees will come again (the trainer's validation split,
    evaluated every epoch): an encoder that remembers work per input (MiniRocket's features)
    may remember these too, as it does in training mode. Elsewhere in eval mode (a server, a
    one-off evaluation) it should only read what it remembers, so memory does not grow with
    requests."""
    token = _RECURRING.set(True)
    try:
        yield
    finally:
        _RECURRING.reset(token)


def inputs_recur(module: nn.Module) -> bool:
    """Whether ``module`` may remember per-input work now: in training mode, or inside
    :func:`recurring_inputs`."""
    return module.training or _RECURRING.get()


class Encoder(nn.Module):
    """Turns one modality's :class:`~mmcore.batch.ModalityBatch` into :class:`Features`.

    A subclass calls ``super().__init__(output_size, sequence=...)`` and implements
    ``forward(batch) -> Features``, usually ending with
    ``return self.features(x, mask, batch)``, which pools or keeps the time axis as declared
    and zeroes absent samples.

    Attributes:
        output_size: ``D``, the feature size of the output.
        sequence: ``True`` if ``forward`` returns ``[B, T, D]`` with a mask, ``False`` for
            ``[B, D]``.
    """

    def __init__(self, output_size: int, sequence: bool = False) -> None:
        super().__init__()
        self.output_size = int(output_size)
        self.sequence = bool(sequence)

    def forward(self, batch: ModalityBatch) -> Features:  # pragma: no cover - interface
        raise NotImplementedError

    def features(self, x: Tensor, mask: Tensor | None, batch: ModalityBatch) -> Features:
        """Wrap ``x`` (``[B, D]`` or ``[B, T, D]``) as declared by ``self.sequence``.

        A sequence is mean-pooled over its mask when the encoder is declared pooled; a pooled
        ``x`` given to a sequence encoder becomes a one-step sequence. Absent rows become zero.
        """
        present = batch.present
        # the collate function stated that nothing is absent or padded: nothing to mask
        if batch.full and (x.dim() == 2 or mask is None or mask is batch.mask):
            if x.dim() == 3 and not self.sequence:
                return Features(x.mean(dim=1), present, full=True)
            if x.dim() == 2 and self.sequence:
                x, mask = x.unsqueeze(1), None
            if x.dim() == 3 and mask is None:
                mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
            return Features(x, present, mask if x.dim() == 3 else None, full=True)
        if x.dim() == 3 and not self.sequence:
            return Features(masked_mean(x, mask, present), present)
        if x.dim() == 2 and self.sequence:
            x = x.unsqueeze(1)
            mask = present.unsqueeze(1).clone()
        keep = present.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
        x = x * keep
        if x.dim() == 3 and mask is None:
            mask = present.unsqueeze(1).expand(x.shape[:2]).clone()
        return Features(x, present, mask if x.dim() == 3 else None)
