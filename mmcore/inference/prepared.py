"""mmcore's model and data for your own training loop (a plain loop, Lightning, anything).

:func:`prepare` does what ``mmcore train`` does before its first step and nothing else: it
validates the spec, builds each modality, reads and splits the data, fits the modalities (and
the heads' classes) on the training split, preprocesses every split into the cache, and
builds the model with the spec's seed. What comes back, :class:`Prepared`, holds the model
(an ``nn.Module`` taking ``batch.inputs``), loaders of :class:`~mmcore.batch.Batch` and the
loss the heads define. Nothing is written outside the data cache; use ``mmcore train`` for run
folders, checkpoints and resume.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from mmcore.evaluate.split import weighted_loss
from mmcore.model import MultimodalModel, build_modalities, build_model
from mmcore.plugins.registry import Registry
from mmcore.spec.load import load_spec, validate_spec
from mmcore.spec.model import Spec


@dataclass
class Prepared:
    """A spec's model and data, ready for a training loop.

    Attributes:
        spec: the resolved spec (the heads' fitted options, e.g. ``classes``, filled in).
        model: the model, ``model(batch.inputs) -> {head: output}``.
        data: the set-up :class:`~mmcore.data.DataModule` (``splits``, ``num_rows``,
            ``loader``).
    """

    spec: Spec
    model: MultimodalModel
    data: Any

    def loader(self, split: str = "train", *, batch_size: int | None = None,
               shuffle: bool | None = None, epoch: int = 0) -> DataLoader:
        """Batches of ``split`` (``train.batch_size`` rows; shuffled for ``"train"`` unless
        told otherwise, in an order that is a function of ``train.seed`` and ``epoch``)."""
        return self.data.loader(
            split, batch_size=batch_size or self.spec.train.batch_size,
            shuffle=(split == "train") if shuffle is None else shuffle,
            seed=self.spec.train.seed, epoch=epoch,
        )

    def loss(self, outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> Tensor:
        """The training loss: each head's loss (class weights, label smoothing... as the
        spec says) times its ``weight``, summed."""
        weights = {name: head.weight for name, head in self.spec.heads.items()}
        return weighted_loss(self.model, outputs, targets, weights)[0]


def prepare(spec: Spec | Mapping[str, Any] | str | Path, *, overrides: Iterable[str] = (),
            registry: Registry | None = None, trust_code: bool = False) -> Prepared:
    """The model and the set-up data a spec declares (a :class:`~mmcore.spec.Spec`, a dict,
    or a spec file), with ``overrides`` such as ``"train.batch_size=64"``. Raises the same
    errors as ``mmcore train`` (:class:`~mmcore.errors.SpecError`,
    :class:`~mmcore.errors.DataError`). ``trust_code`` lets a ``spec.json`` (or a Spec
    from ``spec_from_json``) name fusion classes in any module and in a Python file, as
    ``mmcore train --trust-code`` does."""
    from mmcore.data import DataModule

    if isinstance(spec, str | Path):
        resolved = load_spec(spec, overrides, registry=registry, trust_code=trust_code)
    else:
        resolved = validate_spec(spec, overrides=overrides, registry=registry,
                                 trust_code=trust_code)
    modalities = build_modalities(resolved, registry)
    data = DataModule(resolved, modalities, registry=registry, output_dir=None, progress=False)
    data.setup(fit=True)
    heads = {name: head.model_copy(update={"options": dict(data.head_options.get(
        name, head.options))}) for name, head in resolved.heads.items()}
    resolved = resolved.model_copy(update={"heads": heads})
    torch.manual_seed(resolved.train.seed)
    return Prepared(resolved, build_model(resolved, modalities, registry), data)
