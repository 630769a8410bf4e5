"""Single-label classification: an MLP producing logits, trained with cross-entropy or the
focal loss, optionally with per-class weights (see :mod:`mmcore.heads.imbalance`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from mmcore.head import Head
from mmcore.heads.imbalance import focal_loss, resolve_class_weights
from mmcore.heads.options import ClassificationOptions, from_validated
from mmcore.heads.targets import ClassificationTargets
from mmcore.layers import mlp
from mmcore.metrics import (
    accuracy,
    auroc,
    average_precision,
    balanced_accuracy,
    confusion_matrix,
    expected_calibration_error,
    macro_f1,
    macro_one_vs_rest,
    top_k_accuracy,
)


class ClassificationHead(Head, ClassificationTargets):
    """Logits over ``classes``; ``fit_targets``/``encode_targets`` (class indices) are
    :class:`~mmcore.heads.targets.ClassificationTargets`'."""

    def __init__(self, input_size: int, target: str, **options: Any) -> None:
        super().__init__(input_size, target)
        self.options = from_validated(ClassificationOptions, options, target)
        if not self.options.classes:
            raise ValueError(f"head for {target!r}: no classes (fit_targets was not run)")
        self.classes = list(self.options.classes)
        weights = self.options.fitted_class_weights
        if weights is None and self.options.class_weights is not None:
            if self.options.class_weights == "balanced":
                raise ValueError(f"head for {target!r}: class_weights='balanced' is not fitted "
                                 "(fit_targets was not run)")
            weights = resolve_class_weights(self.classes, self.options.class_weights)
        # a buffer, so it follows the head to its device; not saved (the spec holds it)
        self.class_weights: Tensor | None
        self.register_buffer(
            "class_weights",
            None if weights is None else torch.tensor(weights, dtype=torch.float32),
            persistent=False,
        )
        self.mlp = mlp(
            input_size, self.options.hidden, len(self.classes), dropout=self.options.dropout
        )
        #: divides the logits before the softmax of ``predict`` and the metrics
        #: (``fitted_temperature``, :mod:`mmcore.heads.calibration`); 1 until fitted
        self.temperature = float(self.options.fitted_temperature or 1.0)

    def probabilities(self, output: Tensor) -> Tensor:
        """``softmax(output / temperature)``: the calibrated class probabilities."""
        return (output.float() / self.temperature).softmax(-1)

    def average(self, outputs: Sequence[Tensor]) -> Tensor:
        """The log of the members' mean class probabilities: logits whose softmax is the
        average of the members' softmaxes (an ensemble averages probabilities, not logits);
        float32 whatever the members' precision, as the metrics and the calibration read it."""
        log_probs = torch.stack([o.float().log_softmax(-1) for o in outputs])
        return log_probs.logsumexp(dim=0) - math.log(len(outputs))

    def set_temperature(self, value: float) -> None:
        """Use ``value`` from now on and keep it in the options (saved with the spec)."""
        self.temperature = float(value)
        self.options.fitted_temperature = float(value)

    def forward(self, fused: Tensor) -> Tensor:
        return self.mlp(fused)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        """Cross-entropy (``weight=class_weights``, ``label_smoothing``) or the focal loss,
        both a mean weighted by the rows' class weights."""
        weight = None if self.class_weights is None else self.class_weights.float()
        if self.options.loss == "focal":
            return focal_loss(output, target, self.options.focal_gamma, weight)
        return F.cross_entropy(
            output.float(), target, weight=weight,
            label_smoothing=self.options.smoothing,
        )

    def predict(self, output: Tensor) -> list[dict[str, Any]]:
        probs = self.probabilities(output)
        best = probs.argmax(-1)
        return [
            {"label": self.classes[int(i)], "probability": float(p[int(i)])}
            for i, p in zip(best, probs, strict=True)
        ]

    def metrics(self, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        """Accuracy, macro-F1, top-k accuracy, balanced accuracy, AUROC and average
        precision (of the positive class with 2 classes, else macro one-vs-rest over the
        classes present in the targets), and the expected calibration error (15 bins)."""
        pred = outputs.argmax(-1)
        probs = self.probabilities(outputs)
        n = len(self.classes)
        return {
            "accuracy": accuracy(pred, targets),
            "macro_f1": macro_f1(pred, targets, n),
            "top_k": top_k_accuracy(outputs, targets, self.options.top_k),
            "balanced_accuracy": balanced_accuracy(pred, targets, n),
            "auroc": macro_one_vs_rest(probs, targets, auroc),
            "average_precision": macro_one_vs_rest(probs, targets, average_precision),
            "ece": expected_calibration_error(probs, targets),
        }

    def per_class(self, outputs: Tensor, targets: Tensor) -> dict[str, dict[str, float]]:
        """Precision, recall, F1, support (rows whose target it is) and predicted (rows predicted
        as it) of every class that is a target or predicted at least once; a class neither
        (support 0, never predicted) is left out. A class never predicted has precision 0, one
        never a target recall 0."""
        counts = confusion_matrix(outputs.argmax(-1), targets, len(self.classes)).double()
        tp, predicted, support = counts.diag(), counts.sum(0), counts.sum(1)
        precision = torch.where(predicted > 0, tp / predicted.clamp_min(1), 0.0)
        recall = torch.where(support > 0, tp / support.clamp_min(1), 0.0)
        both = precision + recall
        f1 = torch.where(both > 0, 2 * precision * recall / both.clamp_min(1e-300), 0.0)
        return {
            str(label): {"precision": float(precision[k]), "recall": float(recall[k]),
                         "f1": float(f1[k]), "support": int(support[k]),
                         "predicted": int(predicted[k])}
            for k, label in enumerate(self.classes)
            if support[k] > 0 or predicted[k] > 0
        }
