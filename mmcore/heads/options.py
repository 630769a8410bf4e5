"""Options of the built-in heads (no torch import, so specs validate quickly).

The registration names each model (``mmcore/builtin.py``); mmcore validates a spec's head
options with it and builds the head with the validated fields as keyword arguments, which the
head keeps as this model again, without validating them twice (:func:`from_validated`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

Model = TypeVar("Model", bound=BaseModel)


def from_validated(model: type[Model], options: Mapping[str, Any], target: str) -> Model:
    """``model`` holding ``options``, the keyword arguments a head was built with, as they
    are: mmcore validated them with ``model`` already (:mod:`mmcore.spec.options`). Fields not
    given take their defaults. A name ``model`` lacks is a ``TypeError``, as an unexpected
    keyword argument is; values given by hand are trusted, so give valid ones."""
    unknown = sorted(set(options) - set(model.model_fields))
    if unknown:
        raise TypeError(f"head for {target!r}: unexpected option(s) {', '.join(unknown)} "
                        f"(the options of {model.__name__} are {', '.join(model.model_fields)})")
    return model.model_construct(**options)

#: ``label_smoothing`` of a cross-entropy classification head that does not set it
LABEL_SMOOTHING = 0.1

#: ``class_weights``: "balanced", one weight per class, or class -> weight.
ClassWeights = Literal["balanced"] | list[float] | dict[str | int | float | bool, float]


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hidden: list[int] = Field(default_factory=lambda: [128], description="MLP hidden sizes")
    dropout: float = Field(0.1, ge=0, lt=1)


class ClassificationOptions(_Options):
    classes: list[str | int | float | bool] | None = Field(
        None, description="class values in index order (default: sorted values of the train split)"
    )
    label_smoothing: float | None = Field(
        None, ge=0, lt=1, description="label smoothing of the cross-entropy; default: "
        "0.1 with loss='cross_entropy' (docs/spec.md#label-smoothing), 0 "
        "with loss='focal'"
    )
    top_k: int = Field(3, ge=1, description="k of the top-k accuracy metric")
    class_weights: ClassWeights | None = Field(
        None,
        description="per-class loss weights: 'balanced' (n_rows / (n_classes * count_c) on "
        "the train split), a list in the order of classes, or a dict class -> weight "
        "(others 1.0)",
    )
    fitted_class_weights: list[float] | None = Field(
        None, description="set when fitting: class_weights resolved to one weight per class"
    )
    loss: Literal["cross_entropy", "focal"] = "cross_entropy"
    focal_gamma: float = Field(2.0, ge=0, description="focusing exponent of loss='focal'")
    calibrate: bool = Field(
        True, description="at the end of training, fit a temperature on the validation split "
        "so that the predicted probabilities are calibrated (the predicted class does not "
        "change); no validation split: no temperature"
    )
    fitted_temperature: float | None = Field(
        None, gt=0, description="set at the end of training with calibrate: the logits are "
        "divided by it before the softmax of predict and of the metrics"
    )

    @model_validator(mode="after")
    def _consistent(self) -> ClassificationOptions:
        weights = self.class_weights
        n = len(self.classes) if self.classes else None
        for field, value in (
            ("class_weights", weights), ("fitted_class_weights", self.fitted_class_weights)
        ):
            values = list(value.values()) if isinstance(value, dict) else value
            if not isinstance(values, list):
                continue
            bad = [w for w in values if not (math.isfinite(w) and w > 0)]
            if bad:
                raise ValueError(f"{field}: every weight must be a finite number > 0, got {bad}")
            if n is not None and isinstance(value, list) and len(value) != n:
                raise ValueError(
                    f"{field} has {len(value)} value(s) but classes has {n}; give one weight "
                    "per class in the order of classes"
                )
        if self.classes and isinstance(weights, dict):
            names = {str(c) for c in self.classes}
            unknown = [k for k in weights if str(k) not in names]
            if unknown:
                raise ValueError(
                    f"class_weights names {', '.join(map(repr, unknown))}, which is not one of "
                    f"classes {self.classes}"
                )
        if self.loss == "focal" and self.label_smoothing:
            raise ValueError(
                "loss='focal' cannot be combined with label_smoothing (the focal term is defined "
                "for hard labels); set label_smoothing to 0 or use loss='cross_entropy'"
            )
        return self


    @property
    def smoothing(self) -> float:
        """The label smoothing the loss uses: ``label_smoothing``, or its default
        (:data:`LABEL_SMOOTHING` with the cross-entropy, 0 with the focal loss)."""
        if self.label_smoothing is not None:
            return self.label_smoothing
        return 0.0 if self.loss == "focal" else LABEL_SMOOTHING


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
