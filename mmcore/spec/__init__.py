"""Specs: what to train, declared in a Python file and validated with pydantic."""

from mmcore.spec.load import load_spec, spec_from_json, spec_to_json, validate_spec
from mmcore.spec.model import (
    DataSpec,
    FusionSpec,
    HeadSpec,
    ModalitySpec,
    Spec,
    SplitSpec,
    TrainSpec,
)

__all__ = [
    "DataSpec",
    "FusionSpec",
    "HeadSpec",
    "ModalitySpec",
    "Spec",
    "SplitSpec",
    "TrainSpec",
    "load_spec",
    "spec_from_json",
    "spec_to_json",
    "validate_spec",
]
