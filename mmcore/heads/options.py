"""Options of the built-in heads (no torch import, so specs validate quickly)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hidden: list[int] = Field(default_factory=lambda: [128], description="MLP hidden sizes")
    dropout: float = Field(0.1, ge=0, lt=1)


class ClassificationOptions(_Options):
    classes: list[str | int | float | bool] | None = Field(
        None, description="class values in index order (default: sorted values of the train split)"
    )
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    top_k: int = Field(3, ge=1, description="k of the top-k accuracy metric")


class MultiLabelOptions(_Options):
    classes: list[str | int] | None = None
    separator: str = Field(";", description="splits a string value into labels")
    threshold: float = Field(0.5, gt=0, lt=1)


class RegressionOptions(_Options):
    size: int = Field(1, ge=1, description="number of values predicted per row")
    loss: Literal["mse", "l1", "huber"] = "mse"
    normalize: bool = Field(True, description="standardise targets with train-split mean/std")
    mean: list[float] | None = None
    std: list[float] | None = None
