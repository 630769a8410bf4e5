"""How mmcore builds a modality (:func:`mmcore.modality.new_modality`): the spec's columns are
passed to the constructor, and a plugin written before that, ``__init__(name, options,
root=None)``, still loads, trains and predicts."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import mmcore
from mmcore.modality import new_modality
from mmcore.model import build_modalities
from mmcore.plugins.discovery import new_plugin_manager
from mmcore.plugins.registry import Registry
from mmcore.spec import validate_spec
from tests import train_toy
from tests.toy import ToyModality, ToyOptions

pytestmark = pytest.mark.usefixtures("one_thread")


class OldStyleModality(ToyModality):
    """Written the way plugins were before mmcore passed columns: no ``columns`` parameter."""

    def __init__(self, name: str, options: ToyOptions, root: Any = None) -> None:
        super().__init__(name, options, root)
        self.seen_columns = list(self.columns)  # empty here: given right after construction
        self.offset = 0.0

    def fit(self, values):
        assert self.columns, "the columns are set before the modality is fitted"
        self.offset = float(np.mean([self.preprocess(v).mean() for v in values]))


class NewStyleModality(ToyModality):
    """The recommended constructor: ``columns`` taken as a keyword and passed on."""

    def __init__(self, name: str, options: ToyOptions, root: Any = None, *,
                 columns: Any = ()) -> None:
        super().__init__(name, options, root, columns=columns)
        self.seen_columns = list(self.columns)


class KeywordsModality(ToyModality):
    """Forwards whatever keywords it is given."""

    def __init__(self, name: str, options: ToyOptions, root: Any = None, **kwargs: Any) -> None:
        super().__init__(name, options, root, **kwargs)
        self.seen_columns = list(self.columns)


class Plugin:
    @mmcore.hookimpl
    def register_modalities(self, register):
        register("oldstyle", OldStyleModality, ToyOptions, "no columns parameter")
        register("newstyle", NewStyleModality, ToyOptions, "columns at construction")


def _registry() -> Registry:
    pm = new_plugin_manager()
    pm.register(Plugin(), name="constructors")
    return Registry(pm, distributions={"constructors": ("constructors-dist", "1.0")})


def test_columns_reach_the_constructor_when_it_takes_them(tmp_path):
    for cls in (NewStyleModality, KeywordsModality):
        built = new_modality(cls, "m", ToyOptions(), root=tmp_path, columns=("a", "b"))
        assert built.columns == ["a", "b"] and built.seen_columns == ["a", "b"]
        assert built.root == tmp_path
    old = new_modality(OldStyleModality, "m", ToyOptions(), root=str(tmp_path), columns=["a"])
    assert (old.columns, old.seen_columns, old.root) == (["a"], [], tmp_path)
    assert ToyModality("m").columns == []  # by hand, without columns


def test_build_modalities_passes_each_its_columns(tmp_path):
    registry = _registry()
    data = train_toy.write_data(tmp_path / "data.csv")
    spec = validate_spec(_spec(data, tmp_path), registry=registry)
    built = build_modalities(spec, registry)
    assert built["a"].columns == ["x"] and built["a"].seen_columns == []
    assert built["b"].columns == ["z"] and built["b"].seen_columns == ["z"]


def test_with_root_is_a_copy(tmp_path):
    modality = new_modality(OldStyleModality, "m", ToyOptions(), root=tmp_path, columns=["x"])
    assert modality.with_root(tmp_path) is modality
    moved = modality.with_root(tmp_path / "other")
    assert moved is not modality and modality.root == tmp_path
    assert (moved.root, moved.columns, moved.options) == (
        tmp_path / "other", ["x"], modality.options)


def test_an_old_style_plugin_loads_trains_and_predicts(tmp_path):
    from mmcore.train import Trainer

    registry = _registry()
    data = train_toy.write_data(tmp_path / "data.csv")
    spec = validate_spec(_spec(data, tmp_path), registry=registry)
    Trainer(spec, output=tmp_path / "run", registry=registry, plots=False, quiet=True).fit()
    predictor = mmcore.load(tmp_path / "run", registry=registry)
    old = predictor.modalities["a"]
    assert isinstance(old, OldStyleModality) and old.columns == ["x"]
    assert predictor.modalities["b"].columns == ["z"]
    rows = [{"x": 10.0, "z": 0.1}, {"x": [11.0, 12.0], "z": 1.0}]
    predictions = predictor.predict(rows)
    assert len(predictions) == 2
    assert all(p["label"]["label"] in train_toy.CLASSES for p in predictions)


def _spec(data, tmp_path) -> dict[str, Any]:
    spec = train_toy.spec_dict(data, tmp_path / "cache", epochs=1)
    spec["modalities"] = {
        "a": {"plugin": "oldstyle", "column": "x", "options": {"hidden": 4}},
        "b": {"plugin": "newstyle", "column": "z", "options": {"hidden": 4}},
    }
    return spec
