"""Spec files: loading, every kind of error with its field path, overrides, JSON round trip."""

from __future__ import annotations

import json
import textwrap

import pytest

import mmcore
from mmcore.errors import SpecError
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


def test_options_of_a_modality_registered_without_its_options_model_are_checked(toy_registry):
    """A plugin that names its options model only as ``options_class`` (not in its
    registration) gets its options validated all the same, as the model build uses them."""
    from mmcore.plugins.discovery import new_plugin_manager
    from mmcore.plugins.registry import Registry
    from mmcore.spec.load import check_plugins
    from tests.toy import ToyModality

    class Bare:
        @mmcore.hookimpl
        def register_modalities(self, register):
            register("bare", ToyModality)  # no options model named here

    pm = new_plugin_manager()
    pm.register(Bare(), name="bare")
    spec = mmcore.Spec(
        data={"path": "t.csv"},
        modalities={"x": {"plugin": "bare", "column": "x",
                          "options": {"hidden": "wide", "nope": 1}}},
        heads={"y": {"kind": "regression", "target": "y"}},
    )
    fields = {field for field, _ in check_plugins(spec, Registry(pm))}
    assert {"modalities.x.options.hidden", "modalities.x.options.nope"} <= fields
