"""Loading a run: predictions and metrics agree with training, fitted modality state is
restored, missing or incompatible plugins and corrupted files are reported by name."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import torch

import mmcore
from mmcore.errors import CheckpointError, DataError
from mmcore.plugins.discovery import new_plugin_manager
from mmcore.plugins.registry import Registry
from mmcore.spec import validate_spec
from mmcore.train import Trainer
from tests import train_toy as toy


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One trained run shared by this module's tests (treat it as read-only)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("predict")
    reg = toy.registry()
    data = toy.write_data(root / "data.csv")
    spec = validate_spec(toy.spec_dict(data, root / "cache", epochs=5), registry=reg)
    trainer = Trainer(spec, output=root / "run", registry=reg, plots=False, quiet=True)
    final = trainer.fit()
    yield {"run": root / "run", "data": data, "reg": reg, "final": final, "root": root}
    torch.set_num_threads(before)


def _rows(path, split):
    with open(path, newline="") as fh:
        return [r for r in csv.DictReader(fh) if r["split"] == split]


def _copy_run(trained, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(trained["run"], target)
    return target


def test_predictions_agree_with_the_training_metrics(trained, monkeypatch):
    def no_pickle(*args, **kwargs):
        raise AssertionError("torch.load must not be used")

    monkeypatch.setattr(torch, "load", no_pickle)
    predictor = mmcore.load(trained["run"], device="cpu", registry=trained["reg"])
    assert predictor.modalities["a"].mean == pytest.approx(
        json.loads((trained["run"] / "modalities/a/scale.json").read_text())[0])
    rows = _rows(trained["data"], "test")
    raw = [{"x": float(r["x"]), "z": float(r["z"])} for r in rows]
    predictions = predictor.predict(raw, batch_size=5)
    assert len(predictions) == len(rows) == 12
    assert set(predictions[0]) == {"label"}
    assert set(predictions[0]["label"]) == {"label", "probability"}
    assert all(p["label"]["label"] in toy.CLASSES for p in predictions)
    accuracy = sum(p["label"]["label"] == r["y"] for p, r in zip(predictions, rows, strict=True))
    assert accuracy / len(rows) == pytest.approx(trained["final"]["test"]["label.accuracy"])
    result = predictor.evaluate()
    assert result["split"] == "test" and result["rows"] == 12
    assert result["metrics"] == pytest.approx(trained["final"]["test"])
    assert predictor.evaluate("validation")["metrics"] == pytest.approx(
        trained["final"]["validation"])
    assert predictor.predict([]) == []


def test_evaluate_an_external_file_and_the_modality_report(trained, tmp_path):
    run = _copy_run(trained, tmp_path)
    external = tmp_path / "more.csv"
    rows = _rows(trained["data"], "test")
    with open(external, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["x", "z", "y"])
        writer.writeheader()
        writer.writerows({k: r[k] for k in ("x", "z", "y")} for r in rows)
    predictor = mmcore.load(run, registry=trained["reg"])
    result = predictor.evaluate(data=external)
    assert result["split"] == "external" and result["rows"] == 12
    assert result["metrics"]["label.accuracy"] == pytest.approx(
        trained["final"]["test"]["label.accuracy"])
    report = predictor.modality_report("test")
    saved = json.loads((run / "modality_report.json").read_text())
    assert saved == json.loads(json.dumps(report))
    assert report["monitor"] == "label.accuracy" and set(report["modalities"]) == {"a", "b"}
    assert report["baseline"] == pytest.approx(trained["final"]["test"])
    # x (modality a) carries the label; without it the model cannot do as well.
    a = report["modalities"]["a"]
    assert a["without"]["label.loss"] > report["baseline"]["label.loss"]
    with pytest.raises(DataError, match="no split 'nope'"):
        predictor.evaluate("nope")
    unlabeled = tmp_path / "unlabeled.csv"
    unlabeled.write_text("x,z\n10.0,0.5\n11.0,1.0\n")
    with pytest.raises(DataError, match=r"unlabeled.csv: no target column \('y'\)"):
        predictor.evaluate(data=unlabeled)


def test_bad_input_rows_name_row_and_column(trained):
    predictor = mmcore.load(trained["run"], registry=trained["reg"])
    with pytest.raises(DataError, match=r"row 1.*'z'"):
        predictor.predict([{"x": 1.0, "z": 2.0}, {"x": 1.0, "z": None}])
    # rows are numbered by their place in the input, not in the chunk that reads them
    rows = [{"x": 1.0, "z": 2.0}] * 5 + [{"x": 1.0, "z": None}]
    with pytest.raises(DataError, match=r"row 5.*'z'"):
        predictor.predict(rows, batch_size=2)


def test_missing_or_incompatible_plugins_name_the_package(trained, tmp_path):
    run = _copy_run(trained, tmp_path)
    builtin_only = Registry(new_plugin_manager())
    with pytest.raises(CheckpointError, match=rf"{toy.DIST} is not installed.*"
                       rf"pip install '{toy.DIST}==1.0.0'"):
        mmcore.load(run, registry=builtin_only)
    spec = json.loads((run / "spec.json").read_text())
    spec["plugins"][toy.DIST] = "2.3.0"
    (run / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(CheckpointError, match=rf"{toy.DIST} 1.0.0 is installed but the run was "
                       r"trained with 2.3.0, a different major version"):
        mmcore.load(run, registry=trained["reg"])
    spec["plugins"][toy.DIST] = "1.4.0"  # same major version: fine
    (run / "spec.json").write_text(json.dumps(spec))
    assert mmcore.load(run, registry=trained["reg"]).predict([{"x": 10.0, "z": 0.0}])
    # Not recorded (a run from an older version) but still not registered: named as well.
    del spec["plugins"][toy.DIST]
    (run / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(CheckpointError, match="cannot rebuild the model.*modality 'scaled'"):
        mmcore.load(run, registry=builtin_only)


def test_broken_run_folders(trained, tmp_path):
    with pytest.raises(CheckpointError, match="not a run folder.*spec.json is missing"):
        mmcore.load(tmp_path, registry=trained["reg"])
    run = _copy_run(trained, tmp_path)
    (run / "model.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*corrupted"):
        mmcore.load(run, registry=trained["reg"])
    (run / "spec.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"spec\.json.*JSON"):
        mmcore.load(run, registry=trained["reg"])


def test_a_run_trained_on_an_in_memory_dataset(tmp_path):
    import datasets

    reg = toy.registry()
    data = toy.write_data(tmp_path / "data.csv")
    table = datasets.Dataset.from_csv(str(data), cache_dir=str(tmp_path / "cache"))
    splits = {s: table.filter(lambda r, s=s: r["split"] == s) for s in ("train", "test")}
    spec = toy.spec_dict(data, tmp_path / "cache", epochs=1)
    spec["data"] = {"dataset": splits, "cache_dir": str(tmp_path / "cache")}
    run = tmp_path / "run"
    Trainer(validate_spec(spec, registry=reg), output=run, registry=reg, plots=False,
            quiet=True).fit()
    predictor = mmcore.load(run, registry=reg)
    assert len(predictor.predict([{"x": 10.0, "z": 0.1}, {"x": 12.0, "z": 1.0}])) == 2
    with pytest.raises(CheckpointError, match="in-memory dataset.*--data"):
        predictor.evaluate()
    assert predictor.evaluate(data=data)["rows"] == 60
