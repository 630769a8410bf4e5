"""``train.ema``: an exponential moving average (EMA) of the model's weights, kept beside
training and standing for the run.

After every optimizer step each floating-point weight and buffer becomes
``decay * average + (1 - decay) * weight`` (the first step copies them; integer buffers are
copied). The averaged weights are what the run validates (so the best epoch is chosen on
them), what each checkpoint's ``model.safetensors`` holds (so the best weights, the final
evaluation, predict and export use them) and, with the weights being trained kept in the
checkpoint's trainer state, what an exact resume starts from again. On the UCR/UEA sets of
``benchmarks/weight_average.py`` a decay of 0.99 gained about 0.4 points of accuracy at no
extra compute (docs/results.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

#: the trainer state's key for the weights being trained, beside the averaged ones
TRAINING_WEIGHTS = "training_weights"


def _tensors(model: nn.Module) -> list[Tensor]:
    """The model's parameters and buffers, each once (tied ones too), in a fixed order."""
    return [*model.parameters(), *model.buffers()]


class WeightAverage:
    """The EMA of ``model``'s weights at ``decay``; empty until the first :meth:`update`,
    and always with ``decay`` None (no averaging: every method then leaves the model be)."""

    def __init__(self, decay: float | None) -> None:
        self.decay = decay
        self.averaged: list[Tensor] | None = None

    @property
    def ready(self) -> bool:
        """Whether an average exists (after the first optimizer step or a resume)."""
        return self.averaged is not None

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s weights (copy them the first time)."""
        if self.decay is None:
            return
        own = _tensors(model)
        if self.averaged is None:
            self.averaged = [t.detach().clone() for t in own]
            return
        # one foreach per kind of tensor: FSDP's sharded parameters (DTensor) and its plain
        # buffers cannot meet in one call
        kinds: dict[type, tuple[list[Tensor], list[Tensor]]] = {}
        for a, t in zip(self.averaged, own, strict=True):
            if a.is_floating_point():
                averaged, current = kinds.setdefault(type(a), ([], []))
                averaged.append(a)
                current.append(t)
        for averaged, current in kinds.values():
            torch._foreach_lerp_(averaged, current, 1.0 - self.decay)
        for a, t in zip(self.averaged, own, strict=True):
            if not a.is_floating_point():
                a.copy_(t)

    @torch.no_grad()
    def reset(self, model: nn.Module) -> None:
        """Take ``model``'s weights as the average (a resume: they are the saved average)."""
        self.averaged = [t.detach().clone() for t in _tensors(model)]

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """``model`` holds the averaged weights inside the block, its own ones again after
        (nothing changes while there is no average yet)."""
        if self.averaged is None:
            yield
            return
        own = _tensors(model)
        kept = [t.detach().clone() for t in own]
        _copy(own, self.averaged)
        try:
            yield
        finally:
            _copy(own, kept)


@torch.no_grad()
def _copy(targets: list[Tensor], sources: list[Tensor]) -> None:
    # one copy_ each: FSDP's sharded tensors (DTensor) have no rule for _foreach_copy_
    for target, source in zip(targets, sources, strict=True):
        target.copy_(source)
