"""mmcore: multimodal deep learning on PyTorch.

Importing ``mmcore`` is cheap: torch-based parts load on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mmcore.plugins.hookspecs import hookimpl
from mmcore.version import __version__

_LAZY = {
    "Encoder": "mmcore.encoder",
    "Fusion": "mmcore.fusion",
    "PerModalityFusion": "mmcore.fusion",
    "Head": "mmcore.head",
    "Modality": "mmcore.modality",
    "ModalityOptions": "mmcore.modality",
    "ModalityBatch": "mmcore.batch",
    "Features": "mmcore.batch",
    "Batch": "mmcore.batch",
    "MultimodalModel": "mmcore.model",
    "LateFusionModel": "mmcore.model",
    "EnsembleModel": "mmcore.model",
    "build_model": "mmcore.model",
    "build_modalities": "mmcore.model",
    "Spec": "mmcore.spec",
    "DataSpec": "mmcore.spec",
    "ModalitySpec": "mmcore.spec",
    "FusionSpec": "mmcore.spec",
    "HeadSpec": "mmcore.spec",
    "TrainSpec": "mmcore.spec",
    "load_spec": "mmcore.spec",
    "validate_spec": "mmcore.spec",
    "get_registry": "mmcore.plugins",
    "Trainer": "mmcore.train",
    "load": "mmcore.inference.predict",
    "prepare": "mmcore.inference.prepared",
    "Prepared": "mmcore.inference.prepared",
    "MmcoreError": "mmcore.errors",
}

__all__ = ["__version__", "hookimpl", *_LAZY]

if TYPE_CHECKING:
    from mmcore.batch import Batch, Features, ModalityBatch
    from mmcore.encoder import Encoder
    from mmcore.errors import MmcoreError
    from mmcore.fusion import Fusion, PerModalityFusion
    from mmcore.head import Head
    from mmcore.inference.predict import load
    from mmcore.inference.prepared import Prepared, prepare
    from mmcore.modality import Modality, ModalityOptions
    from mmcore.model import (
        EnsembleModel,
        LateFusionModel,
        MultimodalModel,
        build_modalities,
        build_model,
    )
    from mmcore.plugins import get_registry
    from mmcore.spec import (
        DataSpec,
        FusionSpec,
        HeadSpec,
        ModalitySpec,
        Spec,
        TrainSpec,
        load_spec,
        validate_spec,
    )
    from mmcore.train import Trainer


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mmcore' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
