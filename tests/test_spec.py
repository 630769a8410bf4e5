"""Spec files: loading, every kind of error with its field path, overrides, JSON round trip."""

from __future__ import annotations

import json
import textwrap

import pytest

import mmcore
from mmcore.errors import PluginError, SpecError
from mmcore.plugins.registry import Registry
from mmcore.spec import load_spec, spec_from_json, spec_to_json, validate_spec

BASE = {
    "data": {"path": "data.csv"},
    "modalities": {"a": {"plugin": "toy", "column": "x"}},
    "heads": {"label": {"target": "y"}},
    "train": {"callbacks": []},
}


def write(tmp_path, body: str):
    path = tmp_path / "spec.py"
    path.write_text(textwrap.dedent(body))
    return path


def problems(exc: SpecError) -> dict[str, str]:
    return dict(exc.problems)


def test_a_valid_python_spec_file_loads(tmp_path, toy_registry):
    path = write(tmp_path, f"spec = {BASE!r}\n")
    spec = load_spec(path, registry=toy_registry)
    assert spec.modalities["a"].plugin_name == "toy"
    assert spec.base_dir == str(tmp_path)


@pytest.mark.parametrize(
    ("body", "field", "text"),
    [
        ("spec = {", "", "syntax error at line 1"),
        ("x = 1\n", "spec", "no module-level variable 'spec'"),
        ("raise RuntimeError('nope')\n", "", "RuntimeError: nope"),
    ],
)
def test_broken_files_name_the_problem(tmp_path, toy_registry, body, field, text):
    with pytest.raises(SpecError) as err:
        load_spec(write(tmp_path, body), registry=toy_registry)
    assert str(tmp_path / "spec.py") in str(err.value)
    assert text in problems(err.value)[field]


def test_missing_file(tmp_path, toy_registry):
    with pytest.raises(SpecError, match="file not found"):
        load_spec(tmp_path / "nope.py", registry=toy_registry)


def test_wrong_types_and_unknown_keys_give_field_paths(toy_registry):
    bad = json.loads(json.dumps(BASE))
    bad["train"]["epochs"] = "many"
    bad["modalities"]["a"]["colum"] = "x"
    with pytest.raises(SpecError) as err:
        validate_spec(bad, registry=toy_registry)
    found = problems(err.value)
    assert "train.epochs" in found
    assert "modalities.a.colum" in found and "unknown option" in found["modalities.a.colum"]


def test_unknown_names_and_plugin_options(toy_registry):
    bad = json.loads(json.dumps(BASE))
    bad["modalities"]["a"]["plugin"] = "tyo"
    bad["modalities"]["b"] = {"plugin": "toy", "column": "x", "options": {"hiden": 3}}
    bad["heads"]["label"]["kind"] = "clasification"
    bad["fusion"] = {"name": "concat", "options": {"size": -1}}
    with pytest.raises(SpecError) as err:
        validate_spec(bad, registry=toy_registry)
    found = problems(err.value)
    assert "did you mean 'toy'" in found["modalities.a.plugin"]
    assert "unknown option" in found["modalities.b.options.hiden"]
    assert "did you mean 'classification'" in found["heads.label.kind"]
    assert "fusion.options.size" in found


def test_every_problem_at_once_with_pydantic_errors_among_them(toy_registry):
    bad = json.loads(json.dumps(BASE))
    bad["train"]["epochs"] = 0                                     # pydantic
    bad["modalities"]["a"]["plugin"] = "tyo"                       # registry
    bad["modalities"]["b"] = {"plugin": "toy", "column": "x", "options": {"hiden": 3}}
    bad["heads"]["label"]["kind"] = "clasification"
    with pytest.raises(SpecError) as err:
        validate_spec(bad, registry=toy_registry)
    found = problems(err.value)
    assert set(found) == {"train.epochs", "modalities.a.plugin", "modalities.b.options.hiden",
                          "heads.label.kind"}
    assert "errors.pydantic.dev" not in str(err.value)


def test_mmcore_spec_construction_reports_fields_not_a_pydantic_dump(tmp_path, toy_registry):
    import mmcore

    with pytest.raises(SpecError) as err:
        mmcore.Spec(**{**BASE, "train": {"epochs": 0, "batch_sise": 3}})
    assert set(problems(err.value)) == {"train.epochs", "train.batch_sise"}
    assert "errors.pydantic.dev" not in str(err.value)
    # in a spec file, the same error also lists the plugin problems, against the file
    path = write(tmp_path, """
        import mmcore

        spec = mmcore.Spec(
            data={"path": "data.csv"},
            modalities={"a": {"plugin": "tyo", "column": "x"},
                        "b": {"plugin": "toy", "column": "x", "options": {"hiden": 3}}},
            heads={"label": {"kind": "clasification", "target": "y"}},
            train={"epochs": 0, "callbacks": []},
        )
    """)
    with pytest.raises(SpecError) as err:
        load_spec(path, registry=toy_registry)
    assert str(err.value).startswith(f"invalid spec {path}:")
    assert set(problems(err.value)) == {"train.epochs", "modalities.a.plugin",
                                        "modalities.b.options.hiden", "heads.label.kind"}


def test_duplicate_modality_names_are_rejected(toy_registry):
    bad = dict(
        BASE,
        modalities=[
            {"name": "a", "plugin": "toy", "column": "x"},
            {"name": "a", "plugin": "toy", "column": "z"},
        ],
    )
    with pytest.raises(SpecError, match="duplicate modality name 'a'"):
        validate_spec(bad, registry=toy_registry)


def test_overrides_apply_and_are_validated(toy_registry):
    spec = validate_spec(BASE, overrides=["train.epochs=3", "name=demo"], registry=toy_registry)
    assert spec.train.epochs == 3 and spec.name == "demo"
    assert BASE["train"] == {"callbacks": []}  # the caller's dict is untouched
    with pytest.raises(SpecError, match="train.lr"):
        validate_spec(BASE, overrides=["train.lr=-1"], registry=toy_registry)


def test_fusion_class_defined_in_the_spec_file_round_trips(tmp_path, toy_registry):
    path = write(
        tmp_path,
        f"""
        import torch
        import mmcore

        class SumFusion(mmcore.Fusion):
            def __init__(self, input_sizes, size: int = 4):
                super().__init__(input_sizes, output_size=size)
                layers = {{m: torch.nn.Linear(d, size) for m, d in input_sizes.items()}}
                self.proj = torch.nn.ModuleDict(layers)

            def forward(self, features):
                return sum(self.proj[m](f.pooled()) for m, f in sorted(features.items()))

        spec = {BASE!r}
        spec["fusion"] = {{"name": SumFusion, "options": {{"size": 5}}}}
    """,
    )
    spec = load_spec(path, registry=toy_registry)
    data = spec_to_json(spec)
    assert data["fusion"]["name"] == "spec.py:SumFusion"
    again = spec_from_json(json.loads(json.dumps(data)), base_dir=tmp_path)
    assert spec_to_json(again) == data
    with pytest.raises(SpecError, match="fusion.options.bogus"):
        validate_spec(spec, overrides=["fusion.options.bogus=1"], registry=toy_registry)


def test_json_round_trip_keeps_everything(toy_registry):
    spec = validate_spec(dict(BASE, plugins={"toy-dist": "1.0"}), registry=toy_registry)
    data = json.loads(json.dumps(spec_to_json(spec)))
    assert spec_to_json(spec_from_json(data)) == data
    assert data["plugins"] == {"toy-dist": "1.0"}


def _registry_of(**registrations) -> Registry:
    """A registry whose one plugin registers each ``name=(impl, options)`` modality."""
    from mmcore.plugins.discovery import new_plugin_manager

    class Plugin:
        @mmcore.hookimpl
        def register_modalities(self, register):
            for name, (impl, options) in registrations.items():
                register(name, impl, options)

    pm = new_plugin_manager()
    pm.register(Plugin(), name="one")
    return Registry(pm)


def _one_modality(plugin: str, options: dict) -> mmcore.Spec:
    return mmcore.Spec(
        data={"path": "t.csv"},
        modalities={"x": {"plugin": plugin, "column": "x", "options": options}},
        heads={"y": {"kind": "regression", "target": "y"}},
    )


def test_a_modality_registered_without_an_options_model_takes_none():
    """The registration is the one declaration: without an options model there, every
    option is refused (saying why) by ``mmcore validate``, which imports no implementation."""
    from mmcore.spec.load import check_plugins
    from tests.toy import ToyModality

    registry = _registry_of(bare=(ToyModality, None))
    problems = dict(check_plugins(_one_modality("bare", {"hidden": 4, "nope": 1}), registry))
    assert set(problems) == {"modalities.x.options.hidden", "modalities.x.options.nope"}
    assert "registration names no options model" in problems["modalities.x.options.hidden"]
    assert check_plugins(_one_modality("bare", {}), registry) == []


def test_options_class_is_read_only_to_check_it_agrees_with_the_registration():
    """A class attribute ``options_class`` (the second declaration plugins used to write)
    is accepted when it names the registered model, and refused, saying how to declare the
    model once, when it names another or is the only declaration."""
    from mmcore.model import build_modalities
    from tests.toy import ToyModality, ToyOptions

    class Other(ToyOptions):
        pass

    class Agreeing(ToyModality):
        options_class = ToyOptions

    class Disagreeing(ToyModality):
        options_class = Other

    registry = _registry_of(agreeing=(Agreeing, ToyOptions), disagreeing=(Disagreeing, ToyOptions),
                            only_class=(Agreeing, None))
    built = build_modalities(_one_modality("agreeing", {"hidden": 3}), registry)
    assert built["x"].options == ToyOptions(hidden=3)
    with pytest.raises(PluginError, match=r"registers the options model .*ToyOptions but "
                                          r"Disagreeing.options_class is .*Other"):
        build_modalities(_one_modality("disagreeing", {}), registry)
    with pytest.raises(PluginError, match=r"only as Agreeing.options_class.*in the registration"):
        build_modalities(_one_modality("only_class", {}), registry)


def test_the_model_build_validates_options_with_the_same_model_as_the_spec(toy_registry):
    """A spec changed after validation (or read back from spec.json) is checked again where
    the model is built: a SpecError with the field path, not a pydantic dump."""
    from mmcore.model import build_modalities, build_model

    spec = validate_spec(BASE, registry=toy_registry)
    spec.modalities["a"].options["hidden"] = "wide"
    with pytest.raises(SpecError, match="modalities.a.options.hidden"):
        build_modalities(spec, toy_registry)
    spec = validate_spec(BASE, registry=toy_registry)
    spec.heads["label"].options["dropout"] = 2.0
    with pytest.raises(SpecError, match="heads.label.options.dropout"):
        build_model(spec, registry=toy_registry)


def test_eval_batch_size_auto_is_four_batches_on_the_cpu_and_one_on_a_gpu():
    from pydantic import ValidationError

    from mmcore.spec.train import TrainSpec

    auto = TrainSpec(batch_size=8)
    assert (auto.eval_batch("cpu"), auto.eval_batch("cuda"), auto.eval_batch("mps")) == (32, 8, 8)
    fixed = TrainSpec(batch_size=8, eval_batch_size="5")  # from the command line: text
    assert (fixed.eval_batch("cpu"), fixed.eval_batch("cuda")) == (5, 5)
    for bad in (0, True, "4x", 2.5, "²"):
        with pytest.raises(ValidationError, match="expected a number of rows"):
            TrainSpec(eval_batch_size=bad)
