"""Options of the ``tabular`` modality (no torch import, so specs validate quickly)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from mmcore.modality import ModalityOptions


class TabularOptions(ModalityOptions):
    """How the columns of a ``tabular`` modality are read and encoded.

    The modality's columns are the spec's ``column`` list. Each is numeric or categorical:
    ``categorical`` names the categorical ones (names or ``fnmatch`` patterns such as
    ``"cat_*"``); with ``"auto"`` a column is categorical when a training value is not a
    number. Numeric columns are scaled with statistics of the training split; categorical ones
    get embeddings. A missing cell is handled per feature: a numeric one becomes 0 after
    scaling plus a missing indicator, a categorical one its own ``<missing>`` category.
    """

    categorical: list[str] | Literal["auto"] = Field(
        "auto", description="categorical columns (names or fnmatch patterns), or 'auto': those "
        "with a non-numeric training value"
    )
    scaling: Literal["standard", "quantile", "none"] = Field(
        "standard", description="numeric columns: standardised with the training mean and std, "
        "mapped through the training quantiles to a normal distribution, or left as they are"
    )
    missing_indicators: bool = Field(
        True, description="one 0/1 feature per numeric column saying its cell was missing"
    )
    max_categories: int = Field(
        1000, ge=1, description="most categories kept per column (the most frequent); the "
        "rest read as <unknown>"
    )
    min_frequency: int = Field(
        1, ge=1, description="times a category must occur in training to get its own embedding"
    )
    encoder: Literal["mlp", "ft_transformer"] = Field(
        "mlp", description="'mlp': embeddings and numbers concatenated, then an MLP; "
        "'ft_transformer': one token per column, then a transformer (Gorishniy et al. 2021)"
    )
    embedding_size: int = Field(8, ge=1, description="embedding size of a category (mlp)")
    hidden: list[int] = Field(default_factory=lambda: [64], description="MLP hidden sizes")
    d_token: int = Field(32, ge=1, description="token size (ft_transformer)")
    layers: int = Field(2, ge=1, description="transformer layers (ft_transformer)")
    heads: int = Field(4, ge=1, description="attention heads (ft_transformer)")
    dropout: float = Field(0.1, ge=0, lt=1)
    size: int = Field(64, ge=1, description="output feature size D")
    output: Literal["pooled", "sequence"] = Field(
        "pooled", description="'pooled': [B, D]; 'sequence': one token per column with "
        "ft_transformer (one step with mlp), for attention fusions"
    )

    @model_validator(mode="after")
    def _heads_divide(self) -> TabularOptions:
        if self.encoder == "ft_transformer" and self.d_token % self.heads:
            raise ValueError(f"d_token ({self.d_token}) must be a multiple of heads "
                             f"({self.heads})")
        return self
