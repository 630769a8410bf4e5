"""Single-label classification: an MLP producing logits, trained with cross-entropy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import Tensor
from torch.nn import functional as F

from mmcore.head import Head
from mmcore.heads.options import ClassificationOptions
from mmcore.layers import mlp
from mmcore.metrics import accuracy, macro_f1, top_k_accuracy


def sorted_classes(values: Sequence[Any]) -> list[Any]:
    """Distinct values, numerically sorted when all are numbers, else sorted as text."""
    distinct = {v.item() if isinstance(v, np.generic) else v for v in values if v is not None}
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in distinct):
        return sorted(distinct)
    return sorted(distinct, key=str)


class ClassificationHead(Head):
    metric_names = ("accuracy", "macro_f1", "top_k")
    greater_is_better = True

    def __init__(self, input_size: int, target: str, **options: Any) -> None:
        super().__init__(input_size, target)
        self.options = ClassificationOptions.model_validate(options)
        if not self.options.classes:
            raise ValueError(f"head for {target!r}: no classes (fit_targets was not run)")
        self.classes = list(self.options.classes)
        self.mlp = mlp(
            input_size, self.options.hidden, len(self.classes), dropout=self.options.dropout
        )

    def forward(self, fused: Tensor) -> Tensor:
        return self.mlp(fused)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(output.float(), target, label_smoothing=self.options.label_smoothing)

    def predict(self, output: Tensor) -> list[dict[str, Any]]:
        probs = output.float().softmax(-1)
        best = probs.argmax(-1)
        return [
            {"label": self.classes[int(i)], "probability": float(p[int(i)])}
            for i, p in zip(best, probs, strict=True)
        ]

    @staticmethod
    def fit_targets(values: Sequence[Any], options: dict[str, Any]) -> dict[str, Any]:
        if options.get("classes"):
            return {}
        return {"classes": sorted_classes(values)}

    @staticmethod
    def encode_targets(values: Sequence[Any], options: dict[str, Any]) -> np.ndarray:
        classes = options["classes"]
        index = {c: i for i, c in enumerate(classes)}
        index.update({str(c): i for i, c in enumerate(classes)})
        out = np.empty(len(values), dtype=np.int64)
        for row, value in enumerate(values):
            key = value.item() if isinstance(value, np.generic) else value
            if key not in index and str(key) not in index:
                raise ValueError(f"label {key!r} is not one of the classes {classes}")
            out[row] = index[key] if key in index else index[str(key)]
        return out

    def metrics(self, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        pred = outputs.argmax(-1)
        return {
            "accuracy": accuracy(pred, targets),
            "macro_f1": macro_f1(pred, targets, len(self.classes)),
            "top_k": top_k_accuracy(outputs, targets, self.options.top_k),
        }
