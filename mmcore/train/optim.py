"""Optimizers and learning-rate schedules built from :class:`~mmcore.spec.TrainSpec`."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from mmcore.spec.model import ModalitySpec, TrainSpec
from mmcore.train import fused_adam
from mmcore.train.members import model_parts

#: momentum of the ``sgd`` optimizer
SGD_MOMENTUM = 0.9
#: devices whose parameters get torch's fused optimizer kernels
FUSED_DEVICES = ("cpu", "cuda")


def parameter_groups(
    model: nn.Module,
    weight_decay: float,
    lr: float = 1.0,
    modalities: Mapping[str, ModalitySpec] | None = None,
) -> list[dict]:
    """Trainable parameters in groups: matrices with weight decay, biases and norm scales
    (1-d) without, as decaying those only hurts. An encoder whose modality sets ``lr_scale``
    or ``weight_decay`` gets its own pair of groups (``lr`` x ``lr_scale``); the shared groups
    (fusion, heads, other encoders) come first. Each group's ``name`` says whose it is.

    Parameters that do not require a gradient when this is called (a plugin's permanently
    frozen layers) are left out; an encoder frozen by the spec is frozen after the optimizer
    is built (:func:`set_frozen`), so it is in its groups and can be unfrozen later."""
    modalities = modalities or {}
    own = {
        name: m for name, m in modalities.items()
        if m.lr_scale != 1.0 or m.weight_decay is not None
    }
    buckets: dict[str, tuple[list, list]] = {"": ([], [])}
    # ordered by the names the weights are saved under, which a module may keep from an older
    # design (mmcore.sequence.encoder.REFERENCE_NAMES), so that a checkpoint's optimizer
    # state meets its parameters in the same order whatever the attributes are called now
    saved = {id(p): k for k, p in model.state_dict(keep_vars=True).items()}
    for name, param in sorted(model.named_parameters(),
                              key=lambda item: saved.get(id(item[1]), item[0])):
        if not param.requires_grad:
            continue
        parts = name.split(".")
        if parts[0] == "members":  # an ensemble's: members.<i>.encoders.<modality>...
            parts = parts[2:]
        key = parts[1] if parts[0] == "encoders" and len(parts) > 2 and parts[1] in own else ""
        decay, no_decay = buckets.setdefault(key, ([], []))
        (decay if param.dim() >= 2 else no_decay).append(param)
    groups = []
    for key, (decay, no_decay) in buckets.items():
        m = own.get(key)
        scale = m.lr_scale if m is not None else 1.0
        wd = m.weight_decay if m is not None and m.weight_decay is not None else weight_decay
        label = f"encoders.{key}" if key else "shared"
        groups += [
            {"params": decay, "weight_decay": wd, "lr": lr * scale, "name": label},
            {"params": no_decay, "weight_decay": 0.0, "lr": lr * scale, "name": label},
        ]
    return [g for g in groups if g["params"]]


def build_optimizer(
    model: nn.Module, train: TrainSpec, modalities: Mapping[str, ModalitySpec] | None = None
) -> torch.optim.Optimizer:
    """``adamw`` (default), ``adam`` or ``sgd`` (momentum 0.9) over every trainable parameter:
    all encoders, the fusion and all heads are optimised together, an encoder at its
    modality's ``lr_scale`` and ``weight_decay`` (:func:`parameter_groups`).

    Each uses torch's fused update (one kernel per parameter group) where torch has one for
    the parameters' device and dtype, else the multi-tensor (``foreach``) update. On the CPU,
    torch's default is one small kernel per parameter: for a 6k-parameter model's AdamW step
    that measured 470 us, foreach 310 us and fused 90 us. Adam and AdamW are torch's classes
    stepped with less Python around the same fused kernel (:mod:`mmcore.train.fused_adam`)."""
    groups = parameter_groups(model, train.weight_decay, train.lr, modalities)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    kinds: dict[str, tuple[type[torch.optim.Optimizer], dict]] = {
        "adamw": (fused_adam.AdamW, {}),
        "adam": (fused_adam.Adam, {}),
        "sgd": (torch.optim.SGD, {"momentum": SGD_MOMENTUM}),
    }
    if train.optimizer not in kinds:  # the spec's Literal forbids it
        raise ValueError(f"unknown optimizer {train.optimizer!r}")
    cls, extra = kinds[train.optimizer]
    if _fusable(groups):
        try:
            return cls(groups, lr=train.lr, fused=True, **extra)
        except (RuntimeError, ValueError):  # no fused kernel for this device or dtype
            pass
    return cls(groups, lr=train.lr, foreach=True, **extra)


def _fusable(groups: list[dict]) -> bool:
    params = [p for g in groups for p in g["params"]]
    return all(p.is_floating_point() and p.device.type in FUSED_DEVICES for p in params)


def optimizer_step(optimizer: torch.optim.Optimizer, scheduler: LambdaLR,
                   scaler: torch.amp.GradScaler | None, params: Sequence[Sequence[nn.Parameter]],
                   grad_clip: float | None) -> None:
    """One optimizer step: clip the gradients of each list in ``params`` (one per model an
    ensemble trains, :func:`mmcore.train.members.model_parts`) to a norm of ``grad_clip``
    (unscaled first under an fp16 ``scaler``), step (through the scaler, if any), clear the
    gradients, advance the schedule."""
    if scaler is not None:
        scaler.unscale_(optimizer)
    if grad_clip is not None:
        for part in params:
            torch.nn.utils.clip_grad_norm_(part, grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()


def frozen_encoders(modalities: Mapping[str, ModalitySpec], epoch: int) -> frozenset[str]:
    """The encoders the spec keeps frozen during ``epoch`` (``freeze`` / ``unfreeze_at``)."""
    return frozenset(name for name, m in modalities.items() if m.frozen_at(epoch))


def set_frozen(
    model: nn.Module, optimizer: torch.optim.Optimizer, frozen: frozenset[str]
) -> None:
    """Freeze the named encoders and unfreeze the others: ``requires_grad`` of each encoder
    parameter the optimizer holds, and ``model.frozen`` (which runs frozen encoders in eval
    mode without gradients). Parameters the optimizer does not hold stay as they are."""
    held = {id(p) for g in optimizer.param_groups for p in g["params"]}
    for part in model_parts(model):  # an ensemble freezes every member's
        for name, encoder in getattr(part, "encoders", {}).items():
            for param in encoder.parameters():
                if id(param) in held:
                    param.requires_grad_(name not in frozen)
    if hasattr(model, "frozen"):
        model.frozen = frozenset(frozen)
        model.train(model.training)  # frozen encoders to eval mode, the others back


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


def apply_freezing(trainer: Any, epoch: int) -> None:
    """Freeze and unfreeze ``trainer``'s encoders as ``freeze``/``unfreeze_at`` say for
    ``epoch``; the strategy re-wraps the model when its trainable parameters change."""
    model, optimizer = trainer.model, trainer.optimizer
    frozen = frozen_encoders(trainer.spec.modalities, epoch)
    if frozen == model.frozen:
        return
    thawed = sorted(model.frozen - frozen)
    set_frozen(model, optimizer, frozen)
    trainer.net = trainer.strategy.wrap(model)
    if thawed:
        trainer.note(f"epoch {epoch}: unfreezing the {', '.join(thawed)} encoder(s)")
