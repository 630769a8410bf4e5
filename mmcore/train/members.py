"""The training side of ``train.ensemble`` (:class:`~mmcore.model.EnsembleModel`): each
member's order of the training split, and the parts trained (and clipped) on their own loss.

The members differ in initial weights, dropout draws and order of the training split; training
adds their losses, so each member gets exactly the gradient it would get alone. On small data
sets averaging a few members is measurably better than one (docs/results.md, "Ensembles of the
small-data recipe"); it costs ``k`` times the compute of one model.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from mmcore.model import EnsembleModel

#: member i's order of the training split is that of seed ``train.seed + ORDER_STRIDE * i``
ORDER_STRIDE = 1_000_003


def member_seeds(train: Any, streaming: bool = False) -> list[int]:
    """The seeds of the training split's orders, one per ensemble member (``train``: the
    spec's :class:`~mmcore.spec.model.TrainSpec`). The first is ``train.seed``, one model's
    order; members that see the rows in other orders (and other augmentation draws) differ
    more, which is what averaging needs. One order for one model or a streamed split (whose
    shards come in one order)."""
    k = 1 if streaming else train.ensemble
    return [train.seed + ORDER_STRIDE * i for i in range(k)]


def model_parts(model: nn.Module) -> list[nn.Module]:
    """The models trained on their own loss: an ensemble's members, else the model itself."""
    return list(model.parts()) if isinstance(model, EnsembleModel) else [model]
