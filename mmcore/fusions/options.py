"""Options of the built-in fusions (no torch import, so specs validate quickly)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConcatOptions(_Options):
    size: int = Field(256, ge=1, description="output size")
    hidden: int = Field(256, ge=1, description="MLP hidden size")
    dropout: float = Field(0.1, ge=0, lt=1)
