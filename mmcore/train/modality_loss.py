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

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from mmcore.evaluate.split import weighted_loss
from mmcore.model import MultimodalModel


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
    inputs: Mapping[str, Any],
    targets: Mapping[str, Tensor],
    weights: Mapping[str, float],
    modality_loss: float,
) -> tuple[Tensor, list[Tensor]]:
    """A training step's ``(total, [loss_h ...])``: the fused model's weighted loss, plus
    ``modality_loss`` times :func:`alone_loss` with two or more modalities. ``forward`` is the
    (wrapped) model's call, taking ``alone=True``; the head losses are the fused model's."""
    if modality_loss > 0 and len(inputs) > 1:
        outputs, alone = forward(inputs, alone=True)
        total, losses = weighted_loss(model, outputs, targets, weights)
        return total + modality_loss * alone_loss(model, alone, targets, weights), losses
    return weighted_loss(model, forward(inputs), targets, weights)

