"""End-to-end training on tiny CSV data: the run folder, metrics, best/early stopping,
gradient accumulation, non-finite losses (interrupted runs and their resume:
test_train_resume.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import mmcore
from mmcore.errors import CheckpointError, SpecError, TrainingError
from mmcore.heads.classification import ClassificationHead
from mmcore.run import checkpoint as ck
from mmcore.spec import validate_spec
from mmcore.train import Trainer
from mmcore.version import DISTRIBUTION
from tests import train_toy as toy

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


class Recorder:
    """Records the trainer events it receives, as a plugin would."""

    def __init__(self):
        self.events = []

    @mmcore.hookimpl
    def on_train_start(self, trainer):
        self.events.append(("start", trainer.epoch))

    @mmcore.hookimpl
    def on_checkpoint_saved(self, trainer, path):
        self.events.append(("checkpoint", Path(path).name))

    @mmcore.hookimpl
    def on_epoch_end(self, trainer, epoch, metrics):
        self.events.append(("epoch", epoch, sorted(metrics)))

    @mmcore.hookimpl
    def on_train_end(self, trainer, metrics):
        self.events.append(("end", sorted(metrics)))


def test_fit_writes_a_complete_run_folder(tmp_path, data, reg, monkeypatch):
    recorder = Recorder()
    reg.pm.register(recorder, name="recorder")

    def no_pickle(*args, **kwargs):
        raise AssertionError("torch.save/torch.load must not be used")

    monkeypatch.setattr(torch, "save", no_pickle)
    monkeypatch.setattr(torch, "load", no_pickle)
    run = tmp_path / "run"
    trainer, final = toy.fit(toy.validated(tmp_path, data, reg, epochs=3), run, reg)

    saved = json.loads((run / "spec.json").read_text())
    assert saved["heads"]["label"]["options"]["classes"] == toy.CLASSES
    assert saved["plugins"] == {DISTRIBUTION: mmcore.__version__, toy.DIST: toy.VERSION}
    assert saved["data"]["path"] == str(data)  # absolute: a loaded run's base is the run
    mean, std = json.loads((run / "modalities" / "a" / "scale.json").read_text())
    assert 10.5 < mean < 11.5 and 0.5 < std < 1.2  # fitted on the train split
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert {"train/loss", "train/label.loss", "validation/label.accuracy", "validation/loss",
            "lr", "step", "seconds"} <= set(history[0])
    assert history[-1]["step"] == 3 * 5  # 36 train rows, batches of 8
    assert history[-1]["train/loss"] < history[0]["train/loss"]  # it learns
    assert [p.name for p in ck.complete_checkpoints(run / "checkpoints")] == [
        "epoch-0002", "epoch-0003"]
    assert (run / "checkpoints" / "latest").read_text().strip() == "epoch-0003"
    best = json.loads((run / "best" / "best.json").read_text())
    assert best["epoch"] == final["best_epoch"] and best["monitor"] == "label.accuracy"
    values = [r["validation/label.accuracy"] for r in history]
    assert final["best_value"] == max(values)
    assert final["best_epoch"] == values.index(max(values)) + 1  # the first best one
    assert toy.same_tensors(toy.weights(run / "model.safetensors"),
                            toy.weights(run / "best/model.safetensors"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(final))
    assert set(metrics["test"]) >= {"label.accuracy", "label.macro_f1", "label.top_k", "loss"}
    assert metrics["validation"]["label.accuracy"] == pytest.approx(final["best_value"])
    report = json.loads((run / "modality_report.json").read_text())
    assert report["split"] == "test" and report["baseline"] == metrics["test"]
    assert set(report["modalities"]) == {"a", "b"}
    assert trainer.modality_report == report
    csv_lines = (run / "metrics.csv").read_text().splitlines()
    assert len(csv_lines) == 4 and csv_lines[0].startswith("epoch,step,lr,train/loss")
    assert [e[0] for e in recorder.events] == ["start"] + ["checkpoint", "epoch"] * 3 + ["end"]
    assert "test/label.accuracy" in recorder.events[-1][1]


def test_early_stopping_keeps_the_best_epoch(tmp_path, data, reg):
    # A learning rate this small leaves the accuracy flat: no epoch after the first improves.
    trainer, final = toy.fit(
        toy.validated(tmp_path, data, reg, epochs=10, lr=1e-12, early_stopping=2),
        tmp_path / "run", reg)
    assert final["stopped_early"] and final["epochs"] == 3 and final["best_epoch"] == 1
    assert len(trainer.history) == 3
    assert json.loads((tmp_path / "run/best/best.json").read_text())["epoch"] == 1
    state = ck.read_checkpoint(tmp_path / "run/checkpoints/epoch-0003").state
    assert state["bad_epochs"] == 2 and state["best_epoch"] == 1


def test_without_validation_the_training_loss_is_monitored(tmp_path, reg):
    path = toy.write_data(tmp_path / "d.csv")
    path.write_text(path.read_text().replace(",validation\n", ",train\n"))
    spec = toy.validated(tmp_path, path, reg, epochs=2, monitor="label.accuracy")
    trainer, final = toy.fit(spec, tmp_path / "run", reg)
    assert final["monitor"] == "loss" and "validation" not in final and "test" in final
    losses = [r["train/loss"] for r in trainer.history]
    assert final["best_value"] == min(losses)


def test_gradient_accumulation_matches_a_larger_batch(tmp_path, data, reg):
    # SGD without clipping: the update is proportional to the gradient, so a wrongly scaled
    # accumulated gradient would show (Adam would hide a constant factor).
    common = {"epochs": 1, "optimizer": "sgd", "grad_clip": None, "lr": 0.1}
    big, _ = toy.fit(toy.validated(tmp_path, data, reg, batch_size=8, **common),
                     tmp_path / "big", reg)
    small, _ = toy.fit(toy.validated(tmp_path, data, reg, batch_size=4, accumulate=2, **common),
                       tmp_path / "small", reg)
    assert big.step == small.step == 5
    a = toy.weights(tmp_path / "big/model.safetensors")
    b = toy.weights(tmp_path / "small/model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    modalities = mmcore.build_modalities(big.resolved_spec, reg)
    torch.manual_seed(0)  # as the trainer does before building: its initial weights
    untrained = mmcore.build_model(big.resolved_spec, modalities, reg)
    assert any(not torch.allclose(untrained.state_dict()[k], a[k]) for k in a)


def test_a_non_finite_loss_stops_training_and_keeps_the_last_checkpoint(
    tmp_path, data, reg, monkeypatch
):
    calls = {"n": 0}
    original = ClassificationHead.loss

    def poisoned(self, output, target):
        loss = original(self, output, target)
        if self.training:
            calls["n"] += 1
            # three losses a batch (the fused model's, then each of the two modalities'
            # alone: train.modality_loss); batch 8 is epoch 2 (5 batches an epoch), batch 3
            if calls["n"] == 3 * 7 + 1:
                return loss * float("nan")
        return loss

    monkeypatch.setattr(ClassificationHead, "loss", poisoned)
    run = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"epoch 2, batch 3/5 \(optimizer step 8\).*"
                       r"epoch-0001"):
        toy.fit(toy.validated(tmp_path, data, reg, epochs=3), run, reg)
    good = ck.read_checkpoint(run / "checkpoints" / "epoch-0001")
    assert ck.latest_checkpoint(run / "checkpoints") == run / "checkpoints" / "epoch-0001"
    assert all(torch.isfinite(t).all() for t in good.model.values())
    assert toy.same_tensors(toy.weights(run / "model.safetensors"), good.model)


def test_overwrite_leaves_no_report_of_the_run_it_replaces(tmp_path, data, reg):
    spec = toy.validated(tmp_path, data, reg, epochs=1)
    run = tmp_path / "run"
    toy.fit(spec, run, reg)
    (run / "robustness.json").write_text("{}")  # as mmcore evaluate --robustness writes it
    toy.fit(spec, run, reg, overwrite=True)
    assert not (run / "robustness.json").exists()


def test_bf16_autocast_trains_on_cpu(tmp_path, data, reg):
    trainer, final = toy.fit(toy.validated(tmp_path, data, reg, epochs=1, precision="bf16"),
                             tmp_path / "run", reg)
    assert final["epochs"] == 1 and 0 <= final["test"]["label.accuracy"] <= 1


def test_an_existing_run_needs_resume_or_overwrite(tmp_path, data, reg):
    spec = toy.validated(tmp_path, data, reg, epochs=1)
    toy.fit(spec, tmp_path / "run", reg)
    with pytest.raises(CheckpointError, match="already holds a run.*--resume.*--overwrite"):
        toy.fit(spec, tmp_path / "run", reg)
    changed = validate_spec(spec, overrides=["modalities.a.options.hidden=5"], registry=reg)
    with pytest.raises(CheckpointError, match="cannot resume.*modalities"):
        toy.fit(changed, tmp_path / "run", reg, resume=True)
    longer = validate_spec(spec, overrides=["train.epochs=2"], registry=reg)
    trainer, final = toy.fit(longer, tmp_path / "run", reg, resume=True)
    assert final["epochs"] == 2 and [r["epoch"] for r in trainer.history] == [1, 2]
    trainer, final = toy.fit(spec, tmp_path / "run", reg, overwrite=True)
    assert final["epochs"] == 1
    assert [p.name for p in ck.complete_checkpoints(tmp_path / "run/checkpoints")] == [
        "epoch-0001"]


def test_a_fusion_defined_in_the_spec_file_travels_with_the_run(tmp_path, data, reg):
    spec_file = tmp_path / "spec.py"
    spec = toy.spec_dict(data, tmp_path / "cache", epochs=1)
    spec_file.write_text(toy.FUSION_SPEC.replace("SPEC", repr(spec)))
    run = tmp_path / "run"
    Trainer(spec_file, output=run, registry=reg, plots=False, quiet=True).fit()
    assert (run / "spec.py").read_text() == spec_file.read_text()
    assert json.loads((run / "spec.json").read_text())["fusion"] == {
        "name": "spec.py:MeanFusion", "options": {"size": 6}}
    spec_file.unlink()  # the run must not need the original file
    with pytest.raises(SpecError, match="spec.py.*trust_code=True"):
        mmcore.load(run, registry=reg)  # running the copied spec.py needs an opt-in
    predictor = mmcore.load(run, registry=reg, trust_code=True)
    assert type(predictor.model.fusion).__name__ == "MeanFusion"
    assert predictor.model.fusion.output_size == 6
    assert len(predictor.predict([{"x": 10.0, "z": 0.3}])) == 1


def test_progress_bars_when_asked(tmp_path, data, reg, capsys):
    Trainer(toy.validated(tmp_path, data, reg, epochs=2, progress=True), output=tmp_path / "run",
            registry=reg, plots=False, progress=True).fit()
    err = capsys.readouterr().err
    assert "epochs: 100%" in err and "label.accuracy=" in err and "epoch 2" in err
    # Not a terminal (as under pytest) and not forced: no bars at all.
    Trainer(toy.validated(tmp_path, data, reg, epochs=1, progress=True), output=tmp_path / "run2",
            registry=reg, plots=False).fit()
    assert "epochs:" not in capsys.readouterr().err
