"""Temperature scaling of classification heads: fitted on validation at the end of training,
kept in spec.json, used by the metrics, ``predict`` and a loaded run; never changes a class."""

from __future__ import annotations

import json

import pytest
import torch

import mmcore
from mmcore.heads.calibration import fit_temperature
from mmcore.heads.classification import ClassificationHead
from mmcore.metrics import expected_calibration_error
from mmcore.train import Trainer
from tests import train_toy as toy


def test_the_fitted_temperature_undoes_a_known_scaling() -> None:
    g = torch.Generator().manual_seed(0)
    true = torch.randn(4000, 5, generator=g) * 2
    targets = torch.multinomial(true.softmax(-1), 1, generator=g).squeeze(1)
    for scale in (0.3, 1.0, 4.0):  # timid, calibrated and overconfident logits
        assert fit_temperature(true * scale, targets) == pytest.approx(scale, rel=0.1)
    timid = true * 0.3
    calibrated = (timid / fit_temperature(timid, targets)).softmax(-1)
    assert expected_calibration_error(calibrated, targets) < 0.5 * expected_calibration_error(
        timid.softmax(-1), targets)
    assert fit_temperature(true, torch.full((4000,), -1)) == 1.0  # no labelled row


def test_a_head_divides_its_logits_but_keeps_its_classes() -> None:
    head = ClassificationHead(4, "y", classes=["a", "b", "c"], fitted_temperature=2.0)
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 3.0, 1.0]])
    rows = head.predict(logits)
    assert [r["label"] for r in rows] == ["a", "b"]
    assert rows[0]["probability"] == pytest.approx(float((logits[0] / 2).softmax(-1)[0]))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("calibration")
    data = toy.write_data(root / "data.csv", rows=90)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = Trainer(toy.spec_dict(data, root / "cache", epochs=4, callbacks=[]),
                          output=root / "run", registry=toy.registry(), report=False,
                          summary=False, quiet=True)
        trainer.fit()
    finally:
        torch.set_num_threads(before)
    return trainer


def test_training_ends_with_a_temperature_that_predict_and_the_metrics_use(run) -> None:
    saved = json.loads((run.run.path / "spec.json").read_text())
    temperature = saved["heads"]["label"]["options"]["fitted_temperature"]
    assert temperature > 0 and temperature != 1.0
    head = run.model.heads["label"]
    assert head.temperature == pytest.approx(temperature)
    test = run.final_results["test"]
    probs = (test.outputs["label"].float() / temperature).softmax(-1)
    assert run.final_metrics["test"]["label.ece"] == pytest.approx(
        expected_calibration_error(probs, test.targets["label"]))
    loaded = mmcore.load(run.run.path, registry=toy.registry())
    assert loaded.model.heads["label"].temperature == pytest.approx(temperature)
    # the final validation figures (scored again from the calibration's pass) are what
    # evaluating the calibrated run gives
    again = loaded.evaluate("validation", save=False)["metrics"]
    assert again == pytest.approx(run.final_metrics["validation"], abs=1e-6)
    assert again["label.ece"] != pytest.approx(
        expected_calibration_error(run.final_results["validation"].outputs["label"].float()
                                   .softmax(-1), run.final_results["validation"]
                                   .targets["label"]))  # with the temperature, not without


def test_calibrate_false_keeps_the_raw_softmax(tmp_path, one_thread) -> None:
    data = toy.write_data(tmp_path / "data.csv", rows=60)
    spec = toy.spec_dict(data, tmp_path / "cache", epochs=2, callbacks=[])
    spec["heads"]["label"]["options"]["calibrate"] = False
    trainer = Trainer(spec, output=tmp_path / "run", registry=toy.registry(), report=False,
                      summary=False, quiet=True)
    trainer.fit()
    saved = json.loads((tmp_path / "run" / "spec.json").read_text())
    assert "fitted_temperature" not in saved["heads"]["label"]["options"]
    assert trainer.model.heads["label"].temperature == 1.0
