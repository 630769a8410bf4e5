"""Multi-label classification: independent sigmoid outputs, binary cross-entropy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from mmcore.head import Head
from mmcore.heads.options import MultiLabelOptions, from_validated
from mmcore.heads.targets import MultiLabelTargets
from mmcore.layers import mlp


class MultiLabelHead(Head, MultiLabelTargets):
    """Independent logits over ``classes``; ``fit_targets``/``encode_targets`` (0/1 per class)
    are :class:`~mmcore.heads.targets.MultiLabelTargets`'."""

    def __init__(self, input_size: int, target: str, **options: Any) -> None:
        super().__init__(input_size, target)
        self.options = from_validated(MultiLabelOptions, options, target)
        if not self.options.classes:
            raise ValueError(f"head for {target!r}: no classes (fit_targets was not run)")
        self.classes = list(self.options.classes)
        self.mlp = mlp(
            input_size, self.options.hidden, len(self.classes), dropout=self.options.dropout
        )

    def forward(self, fused: Tensor) -> Tensor:
        return self.mlp(fused)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(output.float(), target.float())

    def average(self, outputs: Sequence[Tensor]) -> Tensor:
        """The logits of the members' mean probabilities, class by class:
        ``log(mean p) - log(1 - mean p)``, computed from log-sigmoids (stable), in float32."""
        z = torch.stack(list(outputs)).float()
        return F.logsigmoid(z).logsumexp(dim=0) - F.logsigmoid(-z).logsumexp(dim=0)

    def predict(self, output: Tensor) -> list[dict[str, Any]]:
        probs = output.float().sigmoid()
        return [
            {
                "labels": [
                    c for c, p in zip(self.classes, row, strict=True) if p >= self.options.threshold
                ],
                "probabilities": {str(c): float(p) for c, p in zip(self.classes, row, strict=True)},
            }
            for row in probs
        ]

    def metrics(self, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        pred = (outputs.float().sigmoid() >= self.options.threshold).float()
        tp = (pred * targets).sum(0)
        fp = (pred * (1 - targets)).sum(0)
        fn = ((1 - pred) * targets).sum(0)
        micro = (2 * tp.sum() / (2 * tp.sum() + fp.sum() + fn.sum()).clamp_min(1)).item()
        per_class = 2 * tp / (2 * tp + fp + fn).clamp_min(1)
        return {
            "micro_f1": micro,
            "macro_f1": per_class.mean().item(),
            "exact_match": (pred == targets).all(-1).float().mean().item(),
        }
