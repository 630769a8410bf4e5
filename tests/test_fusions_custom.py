"""Research fusions: a ``Fusion`` subclass used from a spec as a class, by path, or by name.

Also checks the files of ``examples/custom_fusion/``: their fusions keep the fusion contract
and their specs validate.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ConfigDict

import mmcore
from mmcore.cli import main
from mmcore.errors import SpecError
from mmcore.model import build_model
from mmcore.plugins.default import get_registry
from mmcore.plugins.discovery import new_plugin_manager
from mmcore.plugins.registry import Registry
from mmcore.spec import load_spec, spec_from_json, spec_to_json, validate_spec
from mmcore.testing import FusionContract
from tests.toy import ToyModality, ToyOptions, ToyPlugin

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_fusion"


class SumFusion(mmcore.Fusion):
    """Sum of per-modality projections (absent modalities are zero after ``pooled``)."""

    def __init__(self, input_sizes, size: int = 4, scale: float = 1.0):
        super().__init__(input_sizes, output_size=size)
        self.proj = torch.nn.ModuleDict(
            {m: torch.nn.Linear(d, size) for m, d in input_sizes.items()}
        )
        self.scale = scale

    def forward(self, features):
        return self.scale * sum(
            self.proj[m](f.pooled()) * f.present.unsqueeze(-1) for m, f in sorted(features.items())
        )


class NeedsRank(mmcore.Fusion):
    def __init__(self, input_sizes, rank: int):
        super().__init__(input_sizes, output_size=rank)


def spec_with(fusion: dict) -> dict:
    return {
        "data": {"path": "data.csv"},
        "modalities": {
            "a": {"plugin": "toy", "column": "x"},
            "b": {"plugin": "toy2", "column": "z"},
        },
        "fusion": fusion,
        "heads": {"label": {"target": "y", "options": {"classes": [0, 1]}}},
        "train": {"callbacks": []},
    }


def problems(exc: SpecError) -> dict[str, str]:
    return dict(exc.problems)


@pytest.fixture
def research_on_path(monkeypatch) -> None:
    """``my_research`` importable, as it is once pip-installed; no module left cached after."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    yield
    for name in [n for n in sys.modules if n == "my_research" or n.startswith("my_research.")]:
        del sys.modules[name]


def test_a_fusion_class_is_accepted_and_its_signature_checks_options(toy_registry) -> None:
    spec = validate_spec(
        spec_with({"name": SumFusion, "options": {"size": 3}}), registry=toy_registry
    )
    assert spec.fusion.name is SumFusion
    with pytest.raises(SpecError) as err:
        validate_spec(spec_with({"name": SumFusion, "options": {"sise": 3}}), registry=toy_registry)
    assert problems(err.value) == {  # the signature's parameter names are suggested
        "fusion.options.sise": "unknown option (not accepted here); did you mean 'size'?"
    }
    with pytest.raises(SpecError) as err:
        validate_spec(spec_with({"name": NeedsRank}), registry=toy_registry)
    assert problems(err.value) == {"fusion.options.rank": "required option is missing"}


def test_a_fusion_class_gets_its_options_checked_against_its_annotations(toy_registry) -> None:
    """The options model of a class named in a spec is read from its ``__init__``: the
    annotations are checked too, and the class receives the validated values."""
    with pytest.raises(SpecError) as err:
        validate_spec(spec_with({"name": SumFusion, "options": {"scale": "big"}}),
                      registry=toy_registry)
    assert list(problems(err.value)) == ["fusion.options.scale"]
    spec = validate_spec(spec_with({"name": SumFusion, "options": {"size": 3.0}}),
                         registry=toy_registry)
    model = build_model(spec, registry=toy_registry)
    assert model.fusion.output_size == 3 and model.fusion.scale == 1.0


def test_a_module_path_is_accepted_and_round_trips_through_json(toy_registry, research_on_path):
    path = "my_research.fusions:HadamardFusion"
    spec = validate_spec(spec_with({"name": path, "options": {"size": 8}}), registry=toy_registry)
    with pytest.raises(SpecError, match="fusion.options.rank"):
        validate_spec(spec_with({"name": path, "options": {"rank": 8}}), registry=toy_registry)
    from my_research.fusions import HadamardFusion

    as_class = validate_spec(
        spec_with({"name": HadamardFusion, "options": {"size": 8}}), registry=toy_registry
    )
    for original in (spec, as_class):
        data = json.loads(json.dumps(spec_to_json(original)))
        assert data["fusion"] == {"name": path, "options": {"size": 8}}
        with pytest.raises(SpecError, match="if you trust it"):  # JSON is data: opt in
            validate_spec(spec_from_json(data), registry=toy_registry)
        again = validate_spec(spec_from_json(data), registry=toy_registry, trust_code=True)
        model = build_model(again, registry=toy_registry)
        assert type(model.fusion) is HadamardFusion and model.fusion.output_size == 8


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("collections:OrderedDict", "is not a subclass of mmcore.Fusion"),
        ("no_such_package.fusions:Mine", "cannot import 'no_such_package.fusions:Mine'"),
    ],
)
def test_a_path_that_is_not_a_fusion_is_rejected(toy_registry, name, message) -> None:
    with pytest.raises(SpecError) as err:
        validate_spec(spec_with({"name": name}), registry=toy_registry)
    assert message in problems(err.value)["fusion.name"]


def test_a_plugin_registers_a_fusion_by_name(research_on_path) -> None:
    from my_research import plugin
    from my_research.fusions import HadamardFusion

    pm = new_plugin_manager()
    pm.register(ToyPlugin(), name="toy")
    pm.register(plugin, name="my_research")
    registry = Registry(pm)
    assert registry.get("fusion", "hadamard").plugin == "my_research"
    with pytest.raises(SpecError) as err:
        validate_spec(spec_with({"name": "hadamard", "options": {"size": 0}}), registry=registry)
    assert "fusion.options.size" in problems(err.value)
    spec = validate_spec(spec_with({"name": "hadamard", "options": {"size": 6}}), registry=registry)
    model = build_model(spec, registry=registry)
    assert isinstance(model.fusion, HadamardFusion)
    toy = ToyModality("a")
    items = [np.array([1.0, 2.0], np.float32), None, np.array([3.0], np.float32)]
    inputs = {"a": toy.collate(items), "b": toy.collate([None, None, items[0]])}
    logits = model(inputs)["label"]
    assert logits.shape == (3, 2) and torch.isfinite(logits).all()


class StandInOptions(ToyOptions):
    """The toy's options, any other key accepted: the examples' real image/audio options."""

    model_config = ConfigDict(extra="allow", frozen=True)


class StandIns:
    """``image`` and ``audio`` modalities that accept any options: lets the example specs'
    fusion parts be validated whether or not the real modality plugins are installed."""

    @mmcore.hookimpl
    def register_modalities(self, register):
        register("image", ToyModality, StandInOptions, "stand-in")
        register("audio", ToyModality, StandInOptions, "stand-in")


@pytest.fixture
def stand_in_registry() -> Registry:
    pm = new_plugin_manager()
    pm.register(StandIns(), name="stand-ins")
    return Registry(pm)


def test_example_specs_validate_and_their_fusions_round_trip(stand_in_registry, research_on_path):
    inline = load_spec(EXAMPLE / "spec.py", registry=stand_in_registry)
    assert inline.fusion.name.__name__ == "MaxPoolFusion"
    assert spec_to_json(inline)["fusion"]["name"] == "spec.py:MaxPoolFusion"
    by_path = load_spec(EXAMPLE / "spec_by_path.py", registry=stand_in_registry)
    assert spec_to_json(by_path)["fusion"]["name"] == "my_research.fusions:HadamardFusion"
    with pytest.raises(SpecError, match="fusion.options.bogus"):
        load_spec(EXAMPLE / "spec.py", ["fusion.options.bogus=1"], registry=stand_in_registry)


class TestHadamardFusionContract(FusionContract):
    """examples/custom_fusion's fusion by import path keeps the fusion contract."""

    fusion = "my_research.fusions:HadamardFusion"
    options = {"size": 8}

    @pytest.fixture(autouse=True)
    def _on_path(self, research_on_path):
        yield


class TestSpecFileFusionContract(FusionContract):
    """The fusion class defined in examples/custom_fusion/spec.py keeps it too."""

    options = {"size": 8}

    @pytest.fixture(autouse=True)
    def _registry(self, stand_in_registry, research_on_path):
        self.registry = stand_in_registry
        yield

    def build(self):
        torch.manual_seed(0)
        cls = load_spec(EXAMPLE / "spec.py", registry=self.registry).fusion.name
        return cls(dict(self.input_sizes), **self.options)


def test_mmcore_validate_accepts_the_examples_with_the_real_plugins(capsys, research_on_path):
    missing = {"image", "audio"} - set(get_registry().names("modality"))
    if missing:
        pytest.skip(f"modality plugins not installed: {', '.join(sorted(missing))}")
    for name in ("spec.py", "spec_by_path.py"):
        assert main(["validate", str(EXAMPLE / name)]) == 0, capsys.readouterr().err
        assert f"{name}: valid" in capsys.readouterr().out


# -- mmcore.testing.FusionContract catches the usual mistakes ---------------------------------
class _Leaky(mmcore.Fusion):
    """Means over every step, padding and absent rows included."""

    def __init__(self, input_sizes, size: int = 8):
        super().__init__(input_sizes, output_size=size)
        self.proj = torch.nn.Linear(sum(input_sizes.values()), size)

    def forward(self, features):
        parts = [f.values.mean(1) if f.values.dim() == 3 else f.values
                 for _, f in sorted(features.items())]
        return self.proj(torch.cat(parts, -1))


class _BatchCoupled(mmcore.Fusion):
    """Masks correctly, then normalises over the batch: rows depend on each other."""

    def __init__(self, input_sizes, size: int = 8):
        super().__init__(input_sizes, output_size=size)
        self.proj = torch.nn.Linear(sum(input_sizes.values()), size)

    def forward(self, features):
        parts = [f.pooled() * f.present.unsqueeze(-1) for _, f in sorted(features.items())]
        z = self.proj(torch.cat(parts, -1))
        return z - z.mean(0, keepdim=True)


class _Ignoring(mmcore.Fusion):
    """A constant: passes every masking check by reading nothing."""

    def __init__(self, input_sizes, size: int = 8):
        super().__init__(input_sizes, output_size=size)
        self.bias = torch.nn.Parameter(torch.zeros(size))

    def forward(self, features):
        b = next(iter(features.values())).present.shape[0]
        return self.bias.expand(b, -1)


@pytest.mark.parametrize("fusion,check,message", [
    (_Leaky, "test_absent_modalities_and_padding_do_not_reach_the_output", "absent"),
    (_BatchCoupled, "test_eval_is_deterministic_and_rows_are_independent", "other rows"),
    (_Ignoring, "test_present_modalities_change_the_output", "ignores present"),
])
def test_the_fusion_contract_catches_a_flawed_fusion(fusion, check, message) -> None:
    contract = type("Flawed", (FusionContract,), {"fusion": fusion})()
    method = getattr(contract, check)
    with pytest.raises(AssertionError, match=message):
        method("mixed") if "padding" in check else method()
