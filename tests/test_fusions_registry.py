"""The built-in fusions as the registry serves them: names, options models, defaults."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
from pydantic import BaseModel

from mmcore.errors import SpecError
from mmcore.fusion import Fusion
from mmcore.model import build_model
from mmcore.plugins import get_registry
from mmcore.spec import validate_spec

BUILTIN = [
    "attention",
    "concat",
    "film",
    "gated",
    "late",
    "low_rank_tensor",
    "rnn",
    "tensor",
    "weighted",
]
SIZES = {"audio": 6, "image": 5, "text": 3}


def test_every_builtin_fusion_is_registered_lazily_by_the_core() -> None:
    registry = get_registry()
    assert set(BUILTIN) <= set(registry.names("fusion"))
    for name in BUILTIN:
        reg = registry.get("fusion", name)
        assert reg.plugin == "mmcore" and reg.description
        assert isinstance(reg.impl, str) and isinstance(reg.options, str)  # imported on use


@pytest.mark.parametrize("name", BUILTIN)
def test_each_fusion_builds_with_its_options_defaults(name: str) -> None:
    reg = get_registry().get("fusion", name)
    cls, options = reg.load(), reg.load_options()
    assert issubclass(cls, Fusion) and issubclass(options, BaseModel)
    fusion = cls(SIZES, **options().model_dump())
    assert fusion.modalities == sorted(SIZES)
    assert fusion.output_size > 0


@pytest.mark.parametrize("name", BUILTIN)
def test_options_model_mirrors_the_constructor(name: str) -> None:
    """Same option names and the same defaults: a spec validates exactly what builds."""
    reg = get_registry().get("fusion", name)
    params = list(inspect.signature(reg.load().__init__).parameters.values())[2:]
    signature = {p.name: p.default for p in params}
    fields = {
        k: f.get_default(call_default_factory=True)
        for k, f in reg.load_options().model_fields.items()
    }
    assert set(signature) == set(fields)
    for key, default in signature.items():
        expected = list(default) if isinstance(default, tuple) else default
        assert fields[key] == expected, f"{name}.{key}: {fields[key]!r} != {default!r}"


def test_options_models_import_no_torch() -> None:
    code = "import sys, mmcore.fusions.options; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("name", "options", "field"),
    [
        ("weighted", {"smoothnig": 0.1}, "fusion.options.smoothnig"),
        ("weighted", {"smoothing": 1.5}, "fusion.options.smoothing"),
        ("rnn", {"cell": "transformer"}, "fusion.options.cell"),
        ("late", {"mode": "max"}, "fusion.options.mode"),
        ("attention", {"d_model": 0}, "fusion.options.d_model"),
    ],
)
def test_spec_validation_checks_fusion_options(toy_registry, name, options, field) -> None:
    spec = {
        "data": {"path": "data.csv"},
        "modalities": {"a": {"plugin": "toy", "column": "x"}},
        "fusion": {"name": name, "options": options},
        "heads": {"label": {"target": "y"}},
    }
    with pytest.raises(SpecError) as err:
        validate_spec(spec, registry=toy_registry)
    assert field in dict(err.value.problems)


def test_options_that_do_not_fit_the_modalities_are_a_spec_error(toy_registry) -> None:
    spec = validate_spec(
        {
            "data": {"path": "data.csv"},
            "modalities": {
                "a": {"plugin": "toy", "column": "x"},
                "b": {"plugin": "toy", "column": "z"},
            },
            "fusion": {"name": "film", "options": {"condition": "audio"}},
            "heads": {"label": {"target": "y", "options": {"classes": [0, 1]}}},
        },
        source="spec.py",
        registry=toy_registry,
    )
    with pytest.raises(SpecError) as err:
        build_model(spec, registry=toy_registry)
    assert "spec.py" in str(err.value)
    assert (
        "condition 'audio' is not one of the modalities ['a', 'b']"
        in dict(err.value.problems)["fusion.options"]
    )
