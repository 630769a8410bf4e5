"""Optimizers and learning-rate schedules built from :class:`~mmcore.spec.TrainSpec`."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from mmcore.spec.model import TrainSpec

#: momentum of the ``sgd`` optimizer
SGD_MOMENTUM = 0.9


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters in two groups: matrices with weight decay, biases and norm
    scales (1-d) without, as decaying those only hurts."""
    decay, no_decay = [], []
    for _, param in sorted(model.named_parameters()):
        if not param.requires_grad:
            continue
        (decay if param.dim() >= 2 else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, train: TrainSpec) -> torch.optim.Optimizer:
    """``adamw`` (default), ``adam`` or ``sgd`` (momentum 0.9) over every trainable parameter:
    all encoders, the fusion and all heads are optimised together. Each uses torch's
    multi-tensor (``foreach``) update, also on the CPU, where torch's default is one small
    kernel per parameter (on a 6k-parameter model that is ~15% of a training step)."""
    groups = parameter_groups(model, train.weight_decay)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    if train.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=train.lr, foreach=True)
    if train.optimizer == "adam":
        return torch.optim.Adam(groups, lr=train.lr, foreach=True)
    if train.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=train.lr, momentum=SGD_MOMENTUM, foreach=True)
    raise ValueError(f"unknown optimizer {train.optimizer!r}")  # the spec's Literal forbids it


def lr_factor(kind: str, warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """The multiplier of the base learning rate after ``step`` optimizer steps.

    Linear warm-up from ``1/warmup_steps`` to 1 over the first ``warmup_steps`` steps, then
    ``constant`` (1) or ``cosine`` (half a cosine from 1 down to 0 at ``total_steps``).
    """

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if kind == "constant":
            return 1.0
        span = max(total_steps - warmup_steps, 1)
        progress = min((step - warmup_steps) / span, 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, train: TrainSpec, total_steps: int
) -> LambdaLR:
    """A per-optimizer-step schedule; its ``state_dict`` holds only numbers (no pickle)."""
    return LambdaLR(optimizer, lr_factor(train.scheduler, train.warmup_steps, total_steps))
