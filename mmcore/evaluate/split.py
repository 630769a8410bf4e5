"""A model over one split: forward passes over its batches, then losses and whole-split
metrics of a :class:`~mmcore.model.MultimodalModel`. Training validates with it, and a loaded
run (:func:`mmcore.load`) evaluates with it: there is one evaluation path.

Metric names are ``"<head>.<metric>"`` (e.g. ``label.accuracy``), ``"<head>.loss"`` and
``"loss"`` (the weighted sum of the heads' losses).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import Tensor

from mmcore.batch import Batch, ModalityBatch
from mmcore.evaluate.features import FeatureStatistics
from mmcore.head import Head
from mmcore.model import MultimodalModel
from mmcore.strategy import SingleProcess, Strategy

#: a rewrite of a batch's inputs before the forward pass (e.g. a modality hidden)
Transform = Callable[[dict[str, ModalityBatch]], dict[str, ModalityBatch]]


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
    losses = [_head(model, name).loss(outputs[name], targets[name]) for name in names]
    terms = [loss if weights[name] == 1 else weights[name] * loss
             for name, loss in zip(names, losses, strict=True)]
    # the sum starts at its first term, not at a zero: 0 + x is x and 1 * x is x in floating
    # point, so the value and the gradients are those of sum(weight * loss, start=0), without
    # three tensors and two autograd nodes a step; a zero of the default dtype would promote
    # a loss of another dtype, so such a sum starts at it as before
    total = terms[0]
    if total.dtype != torch.get_default_dtype():
        total = torch.zeros((), device=total.device) + total
    for term in terms[1:]:
        total = total + term
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
    #: with ``statistics``: the encoders' feature statistics over the split's rows
    #: (:meth:`~mmcore.evaluate.features.FeatureStatistics.result`), measured in the same pass
    features: dict[str, dict[str, Any]] | None = None


def evaluate_model(
    model: MultimodalModel,
    batches: Iterable[Batch],
    *,
    device: torch.device,
    weights: Mapping[str, float],
    precision: str = "32",
    transform: Transform | None = None,
    strategy: Strategy | None = None,
    batch_size: int | None = None,
    dedupe: bool = True,
    statistics: bool = False,
) -> SplitResult:
    """The one evaluation path: forward (:func:`forward_rows`) → gather every process's rows
    (``strategy.gather_rows``; nothing to gather in one process) → score (:func:`score`).

    Runs ``model`` (in eval mode, restored afterwards) over every batch; metrics from
    ``head.metrics`` over the whole split, losses averaged over rows in chunks of
    ``batch_size`` (the global batch; default: the first batch's size), so the chunks are a
    single process's batches whatever the number of processes. Heads whose targets the split
    lacks get no figures (``loss`` then sums the others); with no targets only ``rows`` is
    set. ``transform`` may rewrite each batch's inputs (e.g. hide a modality). With several
    processes every one calls this on its shard and gets the whole split's figures; with
    ``dedupe`` the rows a sampler repeated to pad the shards are dropped. With ``statistics``
    the result also holds the encoders' feature statistics (``SplitResult.features``, what
    :mod:`mmcore.drift` compares), from the same pass; summed over the processes' shards, the
    few rows a sampler repeats count twice.
    """
    return _evaluate(model, batches, None, device=device, weights=weights,
                     precision=precision, transform=transform, strategy=strategy,
                     batch_size=batch_size, dedupe=dedupe, statistics=statistics)[0]


def evaluate_kept(
    model: MultimodalModel,
    batches: Iterable[Batch],
    kept: Sequence[Collection[str]],
    *,
    device: torch.device,
    weights: Mapping[str, float],
    precision: str = "32",
    strategy: Strategy | None = None,
    batch_size: int | None = None,
    dedupe: bool = True,
    statistics: bool = False,
) -> list[SplitResult]:
    """:func:`evaluate_model` with only each group of ``kept`` modalities kept, the others
    hidden from every row: one result per group, from one pass of the encoders over the split
    (``model(inputs, kept=kept)``: a hidden modality's features are
    :meth:`~mmcore.batch.Features.absent`, what its encoder gives for a hidden input);
    ``statistics`` as for :func:`evaluate_model` (every result holds the same)."""
    return _evaluate(model, batches, list(kept), device=device, weights=weights,
                     precision=precision, strategy=strategy, batch_size=batch_size,
                     dedupe=dedupe, statistics=statistics)


def _evaluate(model: MultimodalModel, batches: Iterable[Batch],
              kept: list[Collection[str]] | None, *, device: torch.device,
              weights: Mapping[str, float], precision: str, transform: Transform | None = None,
              strategy: Strategy | None, batch_size: int | None,
              dedupe: bool, statistics: bool = False) -> list[SplitResult]:
    strategy = strategy or SingleProcess()
    was_training = model.training
    model.eval()  # heads' losses too may differ in training mode
    recorder = FeatureStatistics(model.encoders)
    try:
        with recorder.recording(model.encoders) if statistics else contextlib.nullcontext():
            per_group, targets, index, first = forward_rows(model, batches, device, precision,
                                                           transform, kept)
        features = None
        if statistics:
            shares = strategy.gather(recorder.cpu())
            features = shares[0].merge(shares[1:]).result()
        results = []
        for outputs in per_group:
            out, tgt, rows = strategy.gather_rows((outputs, targets, index), dedupe)
            result = score(model, out, tgt, len(rows), weights=weights, device=device,
                           batch_size=batch_size or first or 1)
            result.features = features
            results.append(result)
        return results
    finally:
        model.train(was_training)


@torch.no_grad()
def forward_rows(
    model: MultimodalModel,
    batches: Iterable[Batch],
    device: torch.device,
    precision: str = "32",
    transform: Transform | None = None,
    kept: list[Collection[str]] | None = None,
) -> tuple[list[dict[str, Tensor]], dict[str, Tensor], Tensor, int]:
    """``model``'s outputs (float32) per head, one set per group of ``kept`` modalities (one,
    the model's, when ``None``), the targets per head and ``Batch.index``, each concatenated
    over ``batches`` on the CPU, plus the first batch's size. (``no_grad`` rather than
    ``inference_mode``: a sharded model's parameter gathers need ordinary tensors.)"""
    was_training = model.training
    model.eval()
    groups = 1 if kept is None else len(kept)
    outputs: list[dict[str, list[Tensor]]] = [{name: [] for name in model.heads}
                                              for _ in range(groups)]
    targets: dict[str, list[Tensor]] = {name: [] for name in model.heads}
    index: list[Tensor] = []
    first = 0
    try:
        for batch in batches:
            inputs = batch.inputs if transform is None else transform(batch.inputs)
            moved = Batch(inputs, batch.targets, batch.index).to(device, non_blocking=True)
            with autocast_context(device, precision):
                out = [model(moved.inputs)] if kept is None else model(moved.inputs, kept=kept)
            first = first or len(batch)
            for name in model.heads:
                for group, group_out in zip(outputs, out, strict=True):
                    group[name].append(group_out[name].float().cpu())
                if name in moved.targets:
                    targets[name].append(moved.targets[name].cpu())
            if batch.index is None:
                raise ValueError("a batch to evaluate needs its row indices (Batch.index)")
            index.append(batch.index.cpu())
    finally:
        model.train(was_training)
    return (
        [{k: torch.cat(v) for k, v in group.items() if v} for group in outputs],
        {k: torch.cat(v) for k, v in targets.items() if v},
        torch.cat(index) if index else torch.zeros(0, dtype=torch.int64),
        first,
    )


@torch.no_grad()
def score(
    model: MultimodalModel,
    outputs: Mapping[str, Tensor],
    targets: Mapping[str, Tensor],
    rows: int,
    *,
    weights: Mapping[str, float],
    device: torch.device,
    batch_size: int,
) -> SplitResult:
    """Losses (row-weighted means over chunks of ``batch_size`` rows) and each head's metrics
    over ``rows`` evaluated rows."""
    metrics: dict[str, float] = {}
    scored = [name for name in model.heads if name in targets]
    if rows and scored:
        sums = torch.zeros(len(scored) + 1, dtype=torch.float64, device=device)
        for start in range(0, rows, batch_size):
            chunk = slice(start, start + batch_size)
            out = {n: outputs[n][chunk].to(device) for n in scored}
            tgt = {n: targets[n][chunk].to(device) for n in scored}
            total, losses = weighted_loss(model, out, tgt, weights)
            sums += torch.stack([total, *losses]).double() * len(out[scored[0]])
        means = (sums / rows).tolist()
        metrics["loss"] = means[0]
        for name, value in zip(scored, means[1:], strict=True):
            metrics[f"{name}.loss"] = value
            scores = _head(model, name).metrics(outputs[name], targets[name])
            metrics.update({f"{name}.{metric}": float(v) for metric, v in scores.items()})
    return SplitResult(metrics, rows, dict(outputs), dict(targets))


def rescore(model: MultimodalModel, result: SplitResult, *, weights: Mapping[str, float],
            device: torch.device, batch_size: int) -> SplitResult:
    """``result``'s outputs scored again (in eval mode) by ``model``'s heads as they are now:
    what evaluating again would give after a change the forward pass does not see (a fitted
    temperature), without the forward pass."""
    was_training = model.training
    model.eval()
    try:
        scored = score(model, result.outputs, result.targets, result.rows, weights=weights,
                       device=device, batch_size=batch_size)
        scored.features = result.features
        return scored
    finally:
        model.train(was_training)


def _head(model: MultimodalModel, name: str) -> Head:
    """``model.heads[name]`` as the :class:`~mmcore.Head` it is (an ``nn.ModuleDict`` item is
    typed as any module)."""
    return cast(Head, model.heads[name])
