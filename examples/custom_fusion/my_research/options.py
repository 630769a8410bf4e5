"""Options of the research fusions; pydantic only, so ``mmcore validate`` imports no torch."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class HadamardOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: int = Field(64, ge=1, description="projection and output size")
    dropout: float = Field(0.0, ge=0, lt=1)
