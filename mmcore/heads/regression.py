"""Regression: an MLP predicting one or more real values, optionally on standardised targets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from mmcore.head import Head
from mmcore.heads.options import RegressionOptions, from_validated
from mmcore.heads.targets import RegressionTargets
from mmcore.layers import mlp
from mmcore.metrics import r2_score

_LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "mse": F.mse_loss, "l1": F.l1_loss, "huber": F.huber_loss}


class RegressionHead(Head, RegressionTargets):
    """``size`` values per row, trained on standardised targets; ``fit_targets`` (mean, std)
    and ``encode_targets`` are :class:`~mmcore.heads.targets.RegressionTargets`'."""

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

    def metrics(self, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        values, truth = self.values(outputs), targets.view(outputs.shape[0], -1).float()
        err = values - truth
        return {"mae": err.abs().mean().item(), "rmse": err.pow(2).mean().sqrt().item(),
                "r2": r2_score(values, truth)}
