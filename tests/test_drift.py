"""Input drift per modality: the scores, the reference a run writes, and ``mmcore evaluate``
reporting a shifted modality, warning about it and (``--hide-drifting``) hiding it."""

from __future__ import annotations

import csv
import json
import math
import shutil

import pytest
import torch

import mmcore
from mmcore.cli import main
from mmcore.drift import (
    MIN_THRESHOLD,
    check_reference,
    drift_report,
    drift_scores,
    evaluate_drift,
    make_reference,
)
from mmcore.errors import CheckpointError
from mmcore.spec import validate_spec
from mmcore.train import Trainer
from tests import train_toy as toy


def stats(mean, std, rows=10):
    return {"rows": rows, "mean": mean, "std": std}


def test_scores_are_mean_shifts_in_training_standard_deviations():
    ref = {"a": stats([0.0, 1.0], [1.0, 2.0]), "b": stats([5.0], [0.0]), "c": {"rows": 0}}
    cur = {"a": stats([1.0, 0.0], [1.0, 1.0], rows=100), "b": stats([5.0], [1.0]),
           "c": stats([1.0], [1.0])}
    scores = drift_scores(ref, cur)
    assert scores["a"] == pytest.approx((1.0 / 1 + 1.0 / 2) / 2)
    assert scores["b"] == 0.0  # a constant feature that did not move
    assert math.isnan(scores["c"])  # no training rows: nothing to compare with
    reference = make_reference(ref, {"a": stats([0.1, 1.0], [1.0, 2.0]), "b": stats([5.0], [0])})
    assert reference["validation"]["a"] == pytest.approx(0.05)
    report = drift_report(reference, cur, "test")
    assert report["drifting"] == ["a"] and report["modalities"]["a"]["threshold"] == MIN_THRESHOLD


def test_the_threshold_rises_with_the_validation_splits_own_drift():
    reference = {"train": {"a": stats([0.0], [1.0])}, "validation": {"a": 0.4}}
    report = drift_report(reference, {"a": stats([1.0], [1.0], rows=100)}, "test")
    assert report["modalities"]["a"]["threshold"] == pytest.approx(1.2)
    assert report["drifting"] == []


def test_a_split_of_a_few_rows_is_not_called_drifting_for_its_noise():
    reference = {"train": {"a": stats([0.0], [1.0])}}
    few = drift_report(reference, {"a": stats([0.9], [1.0], rows=4)}, "tiny")
    assert few["modalities"]["a"]["threshold"] == pytest.approx(2.5 / 2) and not few["drifting"]
    many = drift_report(reference, {"a": stats([0.9], [1.0], rows=400)}, "big")
    assert many["drifting"] == ["a"]


def test_a_malformed_reference_is_refused_as_data():
    with pytest.raises(ValueError, match="'train' object"):
        check_reference([], "x.json")
    with pytest.raises(ValueError, match="train.a needs 'mean'"):
        check_reference({"train": {"a": {"rows": 3, "mean": "os.system"}}}, "x.json")
    with pytest.raises(ValueError, match="'validation' must map"):
        check_reference({"train": {}, "validation": {"a": "high"}}, "x.json")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("drift")
    reg = toy.registry()
    data = toy.write_data(root / "data.csv", rows=90)
    raw = toy.spec_dict(data, root / "cache", epochs=8, modality_dropout=0.3)
    # no label smoothing: with it this 8-epoch toy's GRU features of b move less under the
    # +25 shift below (score 1.1 against a threshold of 1.14, 3x its validation level),
    # where the test needs a shift the features clearly show (4.2 without)
    raw["heads"]["label"]["options"]["label_smoothing"] = 0.0
    spec = validate_spec(raw, registry=reg)
    Trainer(spec, output=root / "run", registry=reg, plots=False, quiet=True).fit()
    yield {"run": root / "run", "data": data, "reg": reg, "root": root}
    torch.set_num_threads(before)


def shifted_copy(trained, column: str, offset: float):
    """The run's test rows with ``offset`` added to ``column``."""
    with open(trained["data"], newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "test"]
    path = trained["root"] / f"shifted-{column}.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["x", "z", "y"])
        writer.writeheader()
        for r in rows:
            writer.writerow({"x": r["x"], "z": r["z"], "y": r["y"],
                             column: f"{float(r[column]) + offset:.4f}"})
    return path


def test_a_run_records_its_training_statistics_and_the_test_split_does_not_drift(trained):
    saved = json.loads((trained["run"] / "drift_reference.json").read_text())
    assert set(saved["train"]) == {"a", "b"} and saved["train"]["a"]["rows"] == 54
    report = evaluate_drift(mmcore.load(trained["run"], registry=trained["reg"]), "test")
    assert report is not None and report["drifting"] == []


def test_a_shifted_modality_is_found_and_can_be_hidden(trained):
    predictor = mmcore.load(trained["run"], registry=trained["reg"])
    report = evaluate_drift(predictor, data=shifted_copy(trained, "z", 25.0), hide=True)
    assert report["drifting"] == ["b"]  # modality b reads column z
    assert report["modalities"]["b"]["score"] > 10 * report["modalities"]["a"]["score"]
    assert report["hidden"] == ["b"] and "label.accuracy" in report["hidden_metrics"]


def test_evaluate_prints_the_drift_and_warns(trained, capsys, monkeypatch):
    monkeypatch.setattr(mmcore.inference.predict, "get_registry", lambda: trained["reg"])
    shifted = shifted_copy(trained, "z", 25.0)
    code = main(["evaluate", str(trained["run"]), "--data", str(shifted), "--no-report",
                 "--hide-drifting"])
    out = capsys.readouterr().out
    assert code == 0
    assert "input drift on external" in out and "DRIFTING" in out
    assert "warning: the inputs of modality 'b' drift" in out
    assert "with b hidden from every row:" in out


def test_a_run_without_a_reference_or_with_a_broken_one(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    (run / "drift_reference.json").unlink()
    assert evaluate_drift(mmcore.load(run, registry=trained["reg"]), "test") is None
    (run / "drift_reference.json").write_text('{"train": 3}')
    with pytest.raises(CheckpointError, match="drift_reference.json: expected an object"):
        evaluate_drift(mmcore.load(run, registry=trained["reg"]), "test")


def test_predict_can_hide_the_modalities_its_rows_drift_in(trained, tmp_path, capsys,
                                                           monkeypatch):
    shifted = shifted_copy(trained, "z", 25.0)
    with open(shifted, newline="") as fh:
        rows = [{"x": r["x"], "z": r["z"]} for r in csv.DictReader(fh)]
    predictor = mmcore.load(trained["run"], registry=trained["reg"])
    plain = predictor.predict(rows)
    assert predictor.last_drift is None
    hidden = predictor.predict(rows, hide_drifting=True)
    assert predictor.last_drift["drifting"] == ["b"]
    missing = mmcore.load(trained["run"], registry=trained["reg"],
                          overrides=["data.allow_missing=true"]).predict(
        [{"x": r["x"], "z": None} for r in rows])
    assert hidden == missing  # hidden = as if the rows lacked the modality
    assert len(plain) == len(hidden) == len(rows)
    # the command line says what it hid
    monkeypatch.setattr(mmcore.inference.predict, "get_registry", lambda: trained["reg"])
    inputs = tmp_path / "rows.jsonl"
    inputs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["predict", str(trained["run"]), "--input", str(inputs), "--hide-drifting",
                 "--output", str(tmp_path / "out.jsonl")]) == 0
    assert "warning: the inputs of b (" in capsys.readouterr().err


def test_training_warns_about_a_modality_that_drifts_on_the_test_split(trained, capsys):
    # the fixture's data with modality b's column moved in the test rows only: a later session
    with open(trained["data"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    later = trained["root"] / "later.csv"
    with open(later, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        for r in rows:
            shift = 25.0 if r["split"] == "test" else 0.0
            writer.writerow({**r, "z": f"{float(r['z']) + shift:.4f}"})
    raw = toy.spec_dict(later, trained["root"] / "cache-later", epochs=8, modality_dropout=0.3)
    raw["heads"]["label"]["options"]["label_smoothing"] = 0.0
    spec = validate_spec(raw, registry=trained["reg"])
    out = trained["root"] / "later-run"
    Trainer(spec, output=out, registry=trained["reg"], plots=False).fit()
    warnings = json.loads((out / "health.json").read_text())["warnings"]
    drifts = [w for w in warnings if w["check"] == "modality_drifts"]
    assert [w["subject"] for w in drifts] == ["b"]
    assert "drifts on the test split" in drifts[0]["message"]
    assert "--hide-drifting" in drifts[0]["suggestions"][0]
    figures = drifts[0]["figures"]
    assert figures["score"] > figures["threshold"] and {"with", "without"} <= set(figures)
    printed = capsys.readouterr()
    assert "warning: modality 'b' drifts on the test split" in printed.out + printed.err
    # the fixture's own run, tested on the rows as recorded, has no such warning
    health = trained["run"] / "health.json"
    recorded = json.loads(health.read_text())["warnings"] if health.is_file() else []
    assert not [w for w in recorded if w["check"] == "modality_drifts"]


def test_the_reference_of_a_large_training_split_is_a_seeded_sample(trained, monkeypatch):
    """Over REFERENCE_ROWS training rows, the statistics are a random sample's (exactly that
    many rows, the same ones every time, whatever the batch size), close to those of every
    row."""
    from mmcore import drift

    predictor = mmcore.load(trained["run"], registry=trained["reg"])
    data = predictor._data_module(setup=True)
    full = drift.measure_reference(predictor.model, data, 8, torch.device("cpu"))
    monkeypatch.setattr(drift, "REFERENCE_ROWS", 16)
    sample = drift.measure_reference(predictor.model, data, 8, torch.device("cpu"))
    again = drift.measure_reference(predictor.model, data, 8, torch.device("cpu"))
    other_batches = drift.measure_reference(predictor.model, data, 5, torch.device("cpu"))
    assert full["train"]["a"]["rows"] == 54 and sample["train"]["a"]["rows"] == 16
    assert sample == again
    assert _close(other_batches, sample)
    assert sample["train"]["a"]["mean"] != full["train"]["a"]["mean"]
    scores = drift_scores(full["train"], sample["train"])
    assert all(score < MIN_THRESHOLD for score in scores.values())


def _close(a, b) -> bool:
    """Nested dicts and lists equal up to float rounding."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return abs(a - b) <= 1e-6 * max(1.0, abs(a))
    return a == b
