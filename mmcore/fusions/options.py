"""Options of the built-in fusions (no torch import, so specs validate quickly).

Each model mirrors the keyword arguments of its fusion's ``__init__``, defaults included;
``tests/test_fusions_registry.py`` checks that they agree.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConcatOptions(_Options):
    size: int = Field(256, ge=1, description="output size")
    hidden: int = Field(256, ge=1, description="MLP hidden size")
    dropout: float = Field(0.1, ge=0, lt=1)


class WeightedOptions(_Options):
    size: int = Field(128, ge=1, description="common projection size and output size")
    temperature: float = Field(1.0, gt=0, description="softmax temperature of the weights")
    smoothing: float = Field(
        0.1, ge=0, le=1, description="share of the weight spread uniformly over present modalities"
    )
    dynamic: bool = Field(False, description="score modalities per sample from their features")
    hidden: list[int] = Field(
        default_factory=list, description="hidden sizes of an output MLP (empty: none)"
    )
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout of the output MLP")


class RNNOptions(_Options):
    cell: Literal["lstm", "gru"] = "lstm"
    hidden: int = Field(128, ge=1, description="hidden size per direction")
    layers: int = Field(1, ge=1)
    bidirectional: bool = False
    project: int = Field(128, ge=1, description="size each modality is projected to")
    steps: Literal["auto", "modalities", "time"] = Field(
        "auto",
        description="one step per modality, or time-aligned sequences ('auto': time "
        "when every input is a sequence)",
    )
    length: int = Field(32, ge=1, description="common number of steps in 'time' mode")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout between recurrent layers")


class GatedOptions(_Options):
    size: int = Field(128, ge=1, description="output size")
    dropout: float = Field(0.0, ge=0, lt=1)


class AttentionOptions(_Options):
    d_model: int = Field(128, ge=1, description="token size and output size")
    heads: int = Field(4, ge=1, description="attention heads (must divide d_model)")
    layers: int = Field(2, ge=1)
    feedforward: int = Field(256, ge=1, description="feed-forward hidden size")
    dropout: float = Field(0.1, ge=0, lt=1)
    positional: bool = Field(True, description="add step-position codes to sequence tokens")


class TensorOptions(_Options):
    project: int = Field(8, ge=1, description="size each modality is projected to")
    size: int = Field(128, ge=1, description="output size")
    hidden: int = Field(128, ge=1, description="hidden size of the MLP after the product")
    dropout: float = Field(0.1, ge=0, lt=1)


class LowRankTensorOptions(_Options):
    rank: int = Field(4, ge=1, description="number of rank-one terms")
    size: int = Field(128, ge=1, description="output size")


class FiLMOptions(_Options):
    condition: str | None = Field(
        None, description="the conditioning modality (default: the last in sorted order)"
    )
    size: int = Field(128, ge=1, description="projection size of the modulated modalities")
    include_condition: bool = Field(
        True, description="append the condition's own projection (output size 2 * size)"
    )


class LateOptions(_Options):
    size: int = Field(128, ge=1, description="size of each modality's representation")
    hidden: int = Field(128, ge=1, description="hidden size of each modality's MLP")
    dropout: float = Field(0.1, ge=0, lt=1)
    mode: Literal["mean", "learned"] = Field(
        "mean", description="average head outputs, or weight them by learned scores"
    )
