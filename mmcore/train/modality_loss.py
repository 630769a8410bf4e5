"""``train.modality_loss``: every modality trained to work alone, beside the fused model.

Each training step adds, for each modality, the loss of the same model with only that modality
kept (the others hidden from every row, as the modality report's "only" column hides them),
averaged over the modalities and weighted by ``train.modality_loss``. Modality dropout hides a
random modality of some rows; this trains each one alone on every row, at the cost of one more
forward pass per modality. A model trained so keeps each modality's own accuracy when another is
hidden, e.g. by ``mmcore evaluate --hide-drifting`` (:mod:`mmcore.drift`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from mmcore.batch import ModalityBatch
from mmcore.evaluate.masking import hide_all
from mmcore.evaluate.split import weighted_loss
from mmcore.model import MultimodalModel


def alone_loss(
    forward: Callable[[dict[str, ModalityBatch]], Mapping[str, Tensor]],
    model: MultimodalModel,
    inputs: Mapping[str, ModalityBatch],
    targets: Mapping[str, Tensor],
    weights: Mapping[str, float],
) -> Tensor:
    """The mean over modalities of the weighted loss with only that modality kept (0 with a
    single modality: the fused loss already is its loss alone)."""
    names = sorted(inputs)
    if len(names) < 2:
        return torch.zeros(())
    total = []
    for name in names:
        outputs = forward(hide_all(inputs, set(names) - {name}))
        total.append(weighted_loss(model, outputs, targets, weights)[0])
    return torch.stack(total).mean()
