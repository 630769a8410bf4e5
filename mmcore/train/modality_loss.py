"""``train.modality_loss``: every modality trained to work alone, beside the fused model.

Each training step adds, for each modality, the loss of the same model with only that modality
kept (the others hidden from every row, as the modality report's "only" column hides them),
averaged over the modalities and weighted by ``train.modality_loss``. The encoders run once:
the model's ``forward(inputs, alone=True)`` runs the fusion and the heads again per modality on
the encoders' features, the others' made absent. Modality dropout hides a random modality of
some rows; this trains each one alone on every row. A model trained so keeps each modality's own
accuracy when another is hidden, e.g. by ``mmcore evaluate --hide-drifting`` (:mod:`mmcore.drift`),
and no modality is left untrained because another one fits the training rows sooner.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from mmcore.evaluate.split import weighted_loss
from mmcore.model import EnsembleModel, MultimodalModel


def alone_loss(
    model: MultimodalModel,
    alone: Mapping[str, Mapping[str, Tensor]],
    targets: Mapping[str, Tensor],
    weights: Mapping[str, float],
) -> Tensor:
    """The mean over modalities of the weighted loss of ``alone[modality]`` (the model's
    outputs with only that modality kept)."""
    losses = [weighted_loss(model, outputs, targets, weights)[0] for _, outputs in
              sorted(alone.items())]
    return torch.stack(losses).mean()


def step_loss(
    model: MultimodalModel,
    forward: Callable[..., Any],
    inputs: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    targets: Mapping[str, Tensor] | Sequence[Mapping[str, Tensor]],
    weights: Mapping[str, float],
    modality_loss: float,
) -> tuple[Tensor, Tensor]:
    """A training step's ``(objective, logged)``: the tensor to differentiate and
    ``[total, loss_h ...]`` to report. ``total`` is the fused model's weighted loss, plus
    ``modality_loss`` times :func:`alone_loss` with two or more modalities. ``forward`` is the
    (wrapped) model's call, taking ``alone=True`` (and ``members=True`` for an ensemble).

    An ensemble's objective is the sum of its members' (each member's gradient is the one it
    would get alone); what is reported is their mean. Its ``inputs`` and ``targets`` may be
    lists, one batch per member."""
    first = inputs[0] if isinstance(inputs, Sequence) else inputs
    alone = modality_loss > 0 and len(first) > 1
    kwargs = {"alone": True} if alone else {}
    if not isinstance(model, EnsembleModel):
        assert isinstance(inputs, Mapping) and isinstance(targets, Mapping)
        total, losses = _member_loss(model, forward(inputs, **kwargs), alone, targets, weights,
                                     modality_loss)
        return total, torch.stack([total, *losses])
    results = forward(inputs, members=True, **kwargs)
    own = list(targets) if isinstance(targets, Sequence) else [targets] * len(results)
    per_member = [torch.stack([t, *ls]) for t, ls in (
        _member_loss(member, result, alone, y, weights, modality_loss)
        for member, result, y in zip(model.parts(), results, own, strict=True))]
    stacked = torch.stack(per_member)
    return stacked[:, 0].sum(), stacked.mean(dim=0)


def _member_loss(model: MultimodalModel, result: Any, alone: bool,
                 targets: Mapping[str, Tensor], weights: Mapping[str, float],
                 modality_loss: float) -> tuple[Tensor, list[Tensor]]:
    if not alone:
        return weighted_loss(model, result, targets, weights)
    outputs, alone_outputs = result
    total, losses = weighted_loss(model, outputs, targets, weights)
    return total + modality_loss * alone_loss(model, alone_outputs, targets, weights), losses
