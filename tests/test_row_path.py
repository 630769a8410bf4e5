"""One path from given rows to a model's inputs: a loaded run (:class:`Predictor`) and an
export bundle (:class:`Runtime`) both collate rows with :func:`mmcore.rows.collate_rows`,
so they give the same inputs and the same error for a bad row, and a ``root`` is a copy of
the modalities, never a change to the caller's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import mmcore.rows
from mmcore.errors import DataError
from mmcore.inference.predictor import Predictor
from mmcore.inference.runtime import Runtime
from mmcore.model import build_modalities, build_model
from mmcore.spec import validate_spec
from tests import train_toy as toy


@pytest.fixture
def pair(tmp_path, monkeypatch):
    """An untrained Predictor and a Runtime over the same modalities and heads, whose graph
    is the Predictor's model; ``seen`` collects the inputs the model is called with."""
    reg = toy.registry()
    raw = toy.spec_dict(toy.write_data(tmp_path / "data.csv"), tmp_path / "cache")
    raw["data"]["allow_missing"] = True
    raw["heads"]["label"]["options"]["classes"] = toy.CLASSES
    spec = validate_spec(raw, registry=reg)
    modalities = build_modalities(spec, reg)
    model = build_model(spec, modalities, reg).eval()
    predictor = Predictor(tmp_path / "run", spec, model, modalities, torch.device("cpu"), reg)
    seen: list[dict] = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda inputs: seen.append(inputs) or forward(inputs))

    def graph(inputs):
        with torch.inference_mode():
            return {name: out.numpy() for name, out in model(dict(inputs)).items()}

    runtime = Runtime(tmp_path, {"inputs": [], "outputs": ["label"], "allow_missing": True},
                      modalities, dict(model.heads.items()), graph=lambda arrays: [])
    monkeypatch.setattr(runtime, "run", graph)
    return predictor, runtime, seen


def _same_inputs(a: dict, b: dict) -> bool:
    def same(x, y):
        return (x is None and y is None) or (x is not None and y is not None
                                             and torch.equal(x, y))

    return a.keys() == b.keys() and all(
        same(a[k].values, b[k].values) and same(a[k].present, b[k].present)
        and same(a[k].mask, b[k].mask) and a[k].extra.keys() == b[k].extra.keys()
        for k in a)


def test_the_predictor_and_the_runtime_collate_rows_alike(pair, monkeypatch):
    predictor, runtime, seen = pair
    calls = []
    collate = mmcore.rows.collate_rows
    monkeypatch.setattr(mmcore.rows, "collate_rows",
                        lambda *a, **k: calls.append(k["first_row"]) or collate(*a, **k))
    rows = [{"x": 10.5, "z": 0.3}, {"x": 11.0}, {"z": [0.1, -0.4, 2.0]}, {"x": "12", "z": 1}]
    eager = predictor.predict(rows, batch_size=3)
    bundled = runtime.predict(rows, batch_size=3)
    assert calls == [0, 3, 0, 3]  # both, batch by batch, through the one function
    assert len(seen) == 4
    for p, r in zip(seen[:2], seen[2:], strict=True):
        assert _same_inputs(p, r)
    assert seen[0]["b"].present.tolist() == [True, False, True]
    assert [p["label"]["label"] for p in eager] == [p["label"]["label"] for p in bundled]
    for p, r in zip(eager, bundled, strict=True):
        assert p["label"]["probability"] == pytest.approx(r["label"]["probability"])


@pytest.mark.parametrize(("rows", "allow_missing", "message"), [
    ([{"x": 1.0}] * 3 + [{"x": float("inf"), "z": 1.0}],
     True, "bad data in split 'input', row 3, column 'x': non-finite value"),
    ([{"x": 1.0, "z": 1.0}, {"y": "a"}],
     True, "bad data in split 'input', row 1, column 'x,z': every modality is missing"),
    ([{"x": 1.0, "z": 1.0}] * 2 + [{"x": 2.0}],
     False, "bad data in split 'input', row 2, column 'z': missing value; set "
     "data.allow_missing=True to allow rows without this modality"),
    ([{"x": 1.0, "z": 1.0}] * 2 + [{"x": float("inf"), "z": None}],
     False, "row 2, column 'x': non-finite value"),  # a bad value outranks a missing one
])
def test_a_bad_row_gets_the_same_error_from_both(pair, rows, allow_missing, message):
    predictor, runtime, _ = pair
    predictor.spec.data.allow_missing = runtime.allow_missing = allow_missing
    with pytest.raises(DataError) as eager:
        predictor.predict(rows, batch_size=2)
    with pytest.raises(DataError) as bundled:
        runtime.predict(rows, batch_size=2)
    assert message in str(eager.value)
    assert str(eager.value) == str(bundled.value)


def test_a_root_is_a_copy_of_the_modalities(pair, tmp_path, monkeypatch):
    """``predict(rows, root=...)`` preprocesses with modalities rooted there, while the
    Predictor's own keep their root, during the call and after it."""
    predictor, _, _ = pair
    own = {name: m.root for name, m in predictor.modalities.items()}
    assert set(own.values()) == {tmp_path}  # the data file's folder
    roots = []

    def preprocess(self, value):
        roots.append((self.root, {n: m.root for n, m in predictor.modalities.items()}))
        return np.asarray([float(value)], dtype=np.float32)

    monkeypatch.setattr(toy.ScaledToyModality, "preprocess", preprocess)
    monkeypatch.setattr(toy.SlowToyModality, "preprocess", preprocess)
    predictor.predict([{"x": 1.0, "z": 2.0}], root=tmp_path / "elsewhere")
    assert roots == [(Path(tmp_path / "elsewhere"), own)] * 2
    assert {name: m.root for name, m in predictor.modalities.items()} == own
    roots.clear()
    predictor.predict([{"x": 1.0, "z": 2.0}])
    assert roots == [(tmp_path, own)] * 2
