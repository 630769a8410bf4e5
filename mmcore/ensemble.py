"""``train.ensemble``: several models of the same spec, trained together, predicting together.

Each member is a whole :class:`~mmcore.model.MultimodalModel` (its own encoders, fusion and
heads) with its own initial weights, dropout draws and order of the training split
(:func:`member_seeds`). Training adds the members' losses, so each member gets exactly the
gradient it would get alone (and its own gradient clipping). Prediction averages the members'
outputs with each head's :meth:`~mmcore.Head.average` (class probabilities for classification
heads), so everything downstream (the best-weights choice, early stopping, calibration, the
modality report, export and serving) reads one model whose outputs are the ensemble's.

On small data sets averaging a few members is measurably better than one (docs/results.md,
``seed_ensemble``); it costs ``k`` times the compute of one model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from torch import Tensor, nn

from mmcore.head import Head
from mmcore.model import MultimodalModel

#: member i's order of the training split is that of seed ``train.seed + ORDER_STRIDE * i``
ORDER_STRIDE = 1_000_003


class EnsembleModel(MultimodalModel):
    """``members`` (k models of the same spec) averaged: ``forward`` returns ``{head: output}``
    like one model. Its ``encoders``, ``fusion`` and ``heads`` are the first member's (for
    reading: every member has the same classes and sizes); its weights are saved as
    ``members.<i>.<name>``."""

    def __init__(self, members: Sequence[MultimodalModel]) -> None:
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        nn.Module.__init__(self)
        self.members = nn.ModuleList(members)

    @property
    def first(self) -> MultimodalModel:
        """The first member: its parts stand for every member's."""
        return cast(MultimodalModel, self.members[0])

    @property
    def encoders(self) -> nn.ModuleDict:  # type: ignore[override]
        return self.first.encoders

    @property
    def fusion(self) -> Any:  # type: ignore[override]
        return self.first.fusion

    @property
    def heads(self) -> nn.ModuleDict:  # type: ignore[override]
        return self.first.heads

    @property
    def frozen(self) -> frozenset[str]:  # type: ignore[override]
        return self.first.frozen

    @frozen.setter
    def frozen(self, names: frozenset[str]) -> None:
        for member in self.members:
            cast(MultimodalModel, member).frozen = frozenset(names)

    def parts(self) -> list[MultimodalModel]:
        """The members, each trained on its own loss."""
        return [cast(MultimodalModel, m) for m in self.members]

    def forward(self, inputs: Mapping[str, Any] | Sequence[Mapping[str, Any]],  # type: ignore[override]
                alone: bool = False, members: bool = False) -> Any:
        """The members' outputs averaged, as :meth:`MultimodalModel.forward` gives them
        (``alone`` too); with ``members``, the list of each member's outputs unaveraged (what
        training needs: one loss per member), and ``inputs`` may be a list of one batch per
        member (each member's own order of the training split)."""
        if isinstance(inputs, Sequence):
            if not members or len(inputs) != len(self.members):
                raise ValueError(f"{len(inputs)} batches for {len(self.members)} members: one "
                                 "batch per member is for training (members=True)")
            own = list(inputs)
        else:
            own = [inputs] * len(self.members)
        results = [member(x, alone=True) if alone else member(x)
                   for member, x in zip(self.members, own, strict=True)]
        if members:
            return results
        if not alone:
            return self.average(results)
        fused = self.average([r[0] for r in results])
        return fused, {m: self.average([r[1][m] for r in results]) for m in results[0][1]}

    def average(self, outputs: Sequence[Mapping[str, Tensor]]) -> dict[str, Tensor]:
        """``{head: output}`` from each member's, averaged by the head (:meth:`Head.average`)."""
        return {name: cast(Head, head).average([o[name] for o in outputs])
                for name, head in self.heads.items()}

    def encode(self, inputs: Any) -> Any:
        raise TypeError("an ensemble has one set of encoders per member: encode with "
                        "model.members[i].encode")

    def predict_features(self, features: Any) -> Any:
        raise TypeError("an ensemble has one set of encoders per member: use "
                        "model.members[i].predict_features")


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
