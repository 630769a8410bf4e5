"""Regression: an MLP predicting one or more real values, optionally on standardised targets."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from mmcore.head import Head
from mmcore.heads.options import RegressionOptions, from_validated
from mmcore.layers import mlp
from mmcore.metrics import r2_score

_LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "mse": F.mse_loss, "l1": F.l1_loss, "huber": F.huber_loss}


def _as_matrix(values: Sequence[Any], size: int) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float32).reshape(len(values), -1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"regression targets must be numbers: {exc}") from None
    if arr.shape[1] != size:
        raise ValueError(f"expected {size} target value(s) per row, got {arr.shape[1]}")
    if not np.isfinite(arr).all():
        row = int(np.argwhere(~np.isfinite(arr))[0, 0])
        raise ValueError(f"target of row {row} is not finite: {values[row]!r}")
    return arr


class RegressionHead(Head):
    metric_names = ("mae", "rmse", "r2")
    greater_is_better = False
    metric_directions = {"r2": True}
    mean: Tensor  # [size] buffers: the targets' standardisation, saved with the weights
    std: Tensor

    def __init__(self, input_size: int, target: str, **options: Any) -> None:
        super().__init__(input_size, target)
        self.options = from_validated(RegressionOptions, options, target)
        size = self.options.size
        self.mlp = mlp(input_size, self.options.hidden, size, dropout=self.options.dropout)
        mean = self.options.mean or [0.0] * size
        std = self.options.std or [1.0] * size
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, fused: Tensor) -> Tensor:
        return self.mlp(fused)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        scaled = (target.view_as(output) - self.mean) / self.std
        return _LOSSES[self.options.loss](output.float(), scaled.float())

    def values(self, output: Tensor) -> Tensor:
        """Predictions in the targets' units."""
        return output.float() * self.std + self.mean

    def predict(self, output: Tensor) -> list[Any]:
        values = self.values(output)
        return [row[0].item() if row.numel() == 1 else row.tolist() for row in values]

    @staticmethod
    def fit_targets(values: Sequence[Any], options: dict[str, Any]) -> dict[str, Any]:
        if not options.get("normalize", True) or options.get("mean") is not None:
            return {}
        arr = _as_matrix(values, options.get("size", 1))
        std = arr.std(0)
        return {"mean": arr.mean(0).tolist(), "std": np.where(std > 0, std, 1.0).tolist()}

    @staticmethod
    def encode_targets(values: Sequence[Any], options: dict[str, Any]) -> np.ndarray:
        arr = _as_matrix(values, options.get("size", 1))
        return arr[:, 0] if arr.shape[1] == 1 else arr

    def metrics(self, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        values, truth = self.values(outputs), targets.view(outputs.shape[0], -1).float()
        err = values - truth
        return {"mae": err.abs().mean().item(), "rmse": err.pow(2).mean().sqrt().item(),
                "r2": r2_score(values, truth)}
