"""Losses and whole-split metrics of a :class:`~mmcore.model.MultimodalModel`.

Metric names are ``"<head>.<metric>"`` (e.g. ``label.accuracy``), ``"<head>.loss"`` and
``"loss"`` (the weighted sum of the heads' losses).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from mmcore.batch import Batch, ModalityBatch
from mmcore.model import MultimodalModel


def weighted_loss(
    model: MultimodalModel,
    outputs: Mapping[str, Tensor],
    targets: Mapping[str, Tensor],
    weights: Mapping[str, float],
) -> tuple[Tensor, list[Tensor]]:
    """``(sum_h weight_h * loss_h, [loss_h ...])`` over the heads in ``targets``, in the
    order of ``model.heads``."""
    names = [name for name in model.heads if name in targets]
    if not names:
        raise ValueError(f"no targets for any head ({', '.join(model.heads)}) in this batch")
    losses = [model.heads[name].loss(outputs[name], targets[name]) for name in names]
    total = sum(
        (weights[name] * loss for name, loss in zip(names, losses, strict=True)),
        start=torch.zeros((), device=losses[0].device),
    )
    return total, losses


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``bf16``/``fp16``, a no-op for ``32``."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision == "fp16":
        return torch.autocast(device_type=device.type, dtype=torch.float16)
    return contextlib.nullcontext()


@dataclass
class SplitResult:
    """A model's figures over one split, plus the concatenated outputs and targets
    (float32, CPU) that plots and reports reuse."""

    metrics: dict[str, float]
    rows: int
    outputs: dict[str, Tensor] = field(default_factory=dict)
    targets: dict[str, Tensor] = field(default_factory=dict)


@torch.inference_mode()
def evaluate_model(
    model: MultimodalModel,
    batches: Iterable[Batch],
    *,
    device: torch.device,
    weights: Mapping[str, float],
    precision: str = "32",
    transform: Callable[[dict[str, ModalityBatch]], dict[str, ModalityBatch]] | None = None,
) -> SplitResult:
    """Run ``model`` (in eval mode) over every batch; metrics from ``head.metrics`` over the
    whole split, losses averaged over rows. Heads whose targets the split lacks get no
    figures (``loss`` then sums the others); with no targets at all only ``rows`` is set.
    ``transform`` may rewrite each batch's inputs (e.g. hide a modality). The model's
    train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    outputs: dict[str, list[Tensor]] = {name: [] for name in model.heads}
    targets: dict[str, list[Tensor]] = {name: [] for name in model.heads}
    scored: list[str] | None = None
    loss_sums: Tensor | None = None
    rows = 0
    try:
        for batch in batches:
            inputs = batch.inputs if transform is None else transform(batch.inputs)
            batch = Batch(inputs, batch.targets, batch.index).to(device, non_blocking=True)
            with autocast_context(device, precision):
                out = model(batch.inputs)
            n = len(batch)
            rows += n
            for name in model.heads:
                outputs[name].append(out[name].float().cpu())
            if scored is None:
                scored = [name for name in model.heads if name in batch.targets]
                loss_sums = torch.zeros(len(scored) + 1, dtype=torch.float64, device=device)
            if not scored:
                continue
            total, losses = weighted_loss(model, out, batch.targets, weights)
            loss_sums += torch.stack([total, *losses]).double() * n  # type: ignore[operator]
            for name in scored:
                targets[name].append(batch.targets[name].cpu())
    finally:
        model.train(was_training)
    cat_out = {k: torch.cat(v) for k, v in outputs.items() if v}
    cat_tgt = {k: torch.cat(v) for k, v in targets.items() if v}
    metrics: dict[str, float] = {}
    if rows and scored:
        means = (loss_sums / rows).tolist()  # type: ignore[operator]
        metrics["loss"] = means[0]
        for name, value in zip(scored, means[1:], strict=True):
            metrics[f"{name}.loss"] = value
            for metric, score in model.heads[name].metrics(cat_out[name], cat_tgt[name]).items():
                metrics[f"{name}.{metric}"] = float(score)
    return SplitResult(metrics, rows, cat_out, cat_tgt)
