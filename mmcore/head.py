"""The ``Head`` interface: fused representation in, one target's prediction and loss out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mmcore.heads.targets import HeadTargets


class Head(nn.Module, HeadTargets):
    """Predicts one target from the fused ``[B, input_size]`` representation.

    Several heads on one model form the multi-output MLP of the reference design. A subclass
    implements ``forward`` (raw outputs, e.g. logits), ``loss`` and ``predict``; heads whose
    targets need a fitted vocabulary (class names) implement ``fit_targets``/``encode_targets``.
    Those two and ``categorical`` come from :class:`~mmcore.heads.targets.HeadTargets`, which
    imports no torch (the built-in heads keep theirs there, so ``mmcore validate`` fits a
    spec's targets without importing the heads).

    Its options are declared once, by the options model its registration names
    (``register(kind, impl, options="pkg.options:Model")``). mmcore validates a spec's options
    with that model and builds the head as ``cls(input_size, target, **fields)``: every field
    of the validated model (defaults included) as a keyword argument, already valid, so the
    head does not validate them again (the built-ins keep them with
    :func:`mmcore.heads.options.from_validated`).

    Attributes:
        input_size: size of the fused representation.
        target: name of the data column this head predicts.
    """

    def __init__(self, input_size: int, target: str) -> None:
        super().__init__()
        self.input_size = int(input_size)
        self.target = target

    def forward(self, fused: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def loss(self, output: Tensor, target: Tensor) -> Tensor:  # pragma: no cover
        """Mean loss over the batch for ``output = self(fused)`` against encoded targets."""
        raise NotImplementedError

    def predict(self, output: Tensor) -> list[Any]:  # pragma: no cover
        """Readable predictions (class names, probabilities, values), one per row."""
        raise NotImplementedError

    def average(self, outputs: Sequence[Tensor]) -> Tensor:
        """One output from several models' outputs for the same rows (``train.ensemble``):
        their mean. A head whose outputs do not average so (logits) overrides it and returns
        the output whose prediction is the average of the members' predictions."""
        return torch.stack(list(outputs)).mean(dim=0)

    def metrics(self, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        """Metrics over a whole split, from concatenated outputs and targets."""
        return {}

    def per_class(self, outputs: Tensor, targets: Tensor) -> dict[str, dict[str, float]]:
        """A per-class report over a whole split (``{class: {"precision", "recall", "f1",
        "support", "predicted"}}``) for heads with classes, leaving out classes that are neither
        a target nor predicted; default: none."""
        return {}
