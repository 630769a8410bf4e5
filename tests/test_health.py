"""Training health warnings: the checks over numbers, the record in ``health.json``, and one
tiny training stuck at chance that warns exactly once (also across a resume)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from mmcore.spec import validate_spec
from mmcore.train import Trainer
from mmcore.train.health import (
    LOSS_AT_CHANCE,
    MODALITY_AT_CHANCE,
    HealthChecks,
    HealthWarning,
    chance_loss,
    class_prior,
    loss_at_chance,
    modality_at_chance,
)
from tests import train_toy as toy


# -- the numbers ------------------------------------------------------------------------------
def test_chance_loss_is_ln_k_for_balanced_classes_and_the_prior_entropy_otherwise():
    assert chance_loss([1 / 26] * 26) == pytest.approx(math.log(26))
    prior = class_prior([90, 10])
    assert prior == [0.9, 0.1]
    entropy = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    assert chance_loss(prior) == pytest.approx(entropy)
    assert chance_loss(prior) < math.log(2)


@pytest.mark.parametrize("weights, smoothing", [(None, 0.1), ([1.0, 4.0, 0.5], 0.0),
                                                ([1.0, 4.0, 0.5], 0.2)])
def test_chance_loss_matches_torch_cross_entropy_of_the_best_constant_guess(weights, smoothing):
    counts = [50, 30, 20]
    targets = torch.tensor(sum(([c] * n for c, n in enumerate(counts)), []))
    weight = None if weights is None else torch.tensor(weights)
    logits = torch.zeros(3, requires_grad=True)  # one guess for every row, fitted
    opt = torch.optim.LBFGS([logits], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits.expand(len(targets), 3), targets, weight=weight,
                               label_smoothing=smoothing)
        loss.backward()
        return loss

    opt.step(closure)
    best = float(closure().detach())
    assert chance_loss(class_prior(counts), weights, smoothing) == pytest.approx(best, rel=1e-4)


# -- the checks -------------------------------------------------------------------------------
def test_loss_at_chance_warns_for_a_stuck_head_with_the_likely_causes():
    chance = math.log(26)
    warning = loss_at_chance("letter", [3.26, 3.259, 3.258], chance, epoch=3, accuracy=0.04,
                             chance_accuracy=1 / 26, rows=500, lr=0.1)
    assert warning is not None and warning.check == LOSS_AT_CHANCE
    assert warning.subject == "letter" and warning.epoch == 3
    text = warning.format()
    assert text.startswith("warning: head 'letter' is not learning")
    assert "train.lr=0.01" in text and "train.lr=1" in text
    assert "transforms" in text and "normalisation" in text
    assert warning.figures["chance_loss"] == pytest.approx(chance)


def test_loss_at_chance_is_silent_when_the_loss_falls_or_validation_is_above_chance():
    chance = math.log(26)
    assert loss_at_chance("letter", [3.2, 2.5, 1.9], chance) is None
    # one epoch below chance is enough to show it learns
    assert loss_at_chance("letter", [3.26, 2.9, 3.25], chance) is None
    # a loss at chance but validation clearly above the majority rate: it learns something
    assert loss_at_chance("letter", [3.25] * 3, chance, accuracy=0.3, chance_accuracy=1 / 26,
                          rows=500) is None
    assert loss_at_chance("letter", [math.nan] * 3, chance) is None
    assert loss_at_chance("letter", [], chance) is None


def test_a_head_at_its_imbalanced_prior_is_stuck_too():
    prior = class_prior([900, 100])
    chance = chance_loss(prior)  # 0.325, well below ln 2
    assert loss_at_chance("y", [0.33, 0.327, 0.326], chance, accuracy=0.9,
                          chance_accuracy=0.9, rows=200) is not None


def test_modality_at_chance_names_the_dead_branch_and_suggests_training_it_alone():
    warning = modality_at_chance("audio", "digit", only=0.11, fused=0.86, chance_accuracy=0.1,
                                 rows=200, modality_dropout=0.0)
    assert warning is not None and warning.check == MODALITY_AT_CHANCE
    assert warning.subject == "audio"
    assert "modality 'audio' alone scores at chance" in warning.message
    assert "train.modality_loss=1" in warning.format()
    for trained_alone in ({"modality_dropout": 0.25}, {"modality_loss": 1.0}):
        warned = modality_at_chance("audio", "digit", 0.11, 0.86, 0.1, rows=200, **trained_alone)
        assert warned is not None and "modality_loss=" not in warned.format()
        assert "alone to see whether it predicts" in warned.format()


def test_a_modality_used_only_jointly_is_not_called_dead():
    # alone at chance, but the model loses 0.30 without it: it is used, with the others
    warning = modality_at_chance("imu", "action", only=0.05, fused=0.86, chance_accuracy=0.04,
                                 rows=300, without=0.56)
    assert warning is not None and warning.figures["without_accuracy"] == 0.56
    assert "only jointly" in warning.message and "dead branch" not in warning.message
    # hiding it costs nothing: it may be dead
    dead = modality_at_chance("imu", "action", 0.05, 0.86, 0.04, rows=300, without=0.86)
    assert dead is not None and "dead branch" in dead.message


def test_a_stuck_weighted_head_names_its_class_weights_first():
    chance = math.log(26)
    warning = loss_at_chance("letter", [3.26] * 3, chance, accuracy=0.04,
                             chance_accuracy=1 / 26, rows=100, lr=1e-3,
                             class_weights=[0.2, 0.5, 6.0])
    assert warning is not None and "class weights" in warning.suggestions[0]
    assert "30x" in warning.suggestions[0] and warning.figures["class_weight_max"] == 6.0
    plain = loss_at_chance("letter", [3.26] * 3, chance, accuracy=0.04,
                           chance_accuracy=1 / 26, rows=100, lr=1e-3)
    assert plain is not None and not any("class weights" in s for s in plain.suggestions)


def test_modality_at_chance_is_silent_when_it_scores_alone_or_the_model_is_at_chance():
    assert modality_at_chance("audio", "digit", 0.45, 0.86, 0.1, rows=200) is None
    assert modality_at_chance("audio", "digit", 0.1, 0.12, 0.1, rows=200) is None  # all stuck


# -- the record -------------------------------------------------------------------------------
def _warning(subject="label"):
    return HealthWarning(LOSS_AT_CHANCE, subject, "stuck", ("try this",), 3, {"x": 1.0})


def test_each_warning_is_noted_once_and_survives_a_resume(tmp_path):
    path, notes = tmp_path / "health.json", []
    checks = HealthChecks(path, notes.append)
    assert checks.add([_warning(), None, _warning()]) == [_warning()]
    assert checks.add([_warning()]) == []
    assert notes == ["warning: stuck\n  - try this"]
    assert json.loads(path.read_text()) == {"warnings": [_warning().to_json()]}
    resumed = HealthChecks(path, notes.append, resume=True)
    assert resumed.warnings == [_warning()]
    assert resumed.add([_warning(), _warning("other")]) == [_warning("other")]
    assert len(notes) == 2
    assert HealthChecks(path, notes.append).warnings == []  # a fresh run starts empty


def test_health_json_is_read_as_data_only(tmp_path):
    path = tmp_path / "health.json"
    path.write_text(json.dumps({"warnings": [
        {"check": "loss_at_chance", "subject": "label", "message": "m", "epoch": True,
         "suggestions": ["ok", {"__class__": "os.system"}], "figures": {"a": 1, "b": "rm -rf"}},
        {"check": ["not", "a", "string"], "subject": "x"},
        "__import__('os')",
    ]}))
    checks = HealthChecks(path, print, resume=True)
    assert checks.warnings == [HealthWarning("loss_at_chance", "label", "m", ("ok",), None,
                                             {"a": 1.0})]
    path.write_text("{not json")
    notes = []
    assert HealthChecks(path, notes.append, resume=True).warnings == []
    assert "earlier warnings are dropped" in notes[0]


# -- in a training ----------------------------------------------------------------------------
def _noise_data(path, rows=60):
    """Like :func:`tests.train_toy.write_data`, but neither input says anything of ``y``."""
    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["x", "z", "y", "s", "split"])
        for i in range(rows):
            split = "train" if i % 5 < 3 else "validation" if i % 5 == 3 else "test"
            writer.writerow([f"{rng.normal():.4f}", f"{rng.normal():.4f}", toy.CLASSES[i % 3],
                             "0", split])
    return path


def test_a_training_stuck_at_chance_warns_once_on_stderr_and_in_the_run_folder(
    tmp_path, capsys, one_thread
):
    reg = toy.registry()
    data = _noise_data(tmp_path / "data" / "data.csv")
    spec = validate_spec(toy.spec_dict(data, tmp_path / "cache", epochs=4, lr=1e-6),
                         registry=reg)
    run = tmp_path / "run"
    Trainer(spec, output=run, registry=reg, plots=False, report=False).fit()
    err = capsys.readouterr().err
    assert err.count("warning: head 'label' is not learning") == 1
    assert err.count("train.lr=1e-07") == 1
    found = json.loads((run / "health.json").read_text())["warnings"]
    assert [(w["check"], w["subject"], w["epoch"]) for w in found] == [
        (LOSS_AT_CHANCE, "label", 3)]
    assert found[0]["figures"]["chance_loss"] == pytest.approx(math.log(3), rel=0.05)

    longer = validate_spec(spec, overrides=["train.epochs=5"], registry=reg)
    Trainer(longer, output=run, registry=reg, plots=False, report=False, resume=True).fit()
    assert "not learning" not in capsys.readouterr().err  # recorded already: not repeated
    assert len(json.loads((run / "health.json").read_text())["warnings"]) == 1

    learns = toy.spec_dict(toy.write_data(tmp_path / "data" / "good.csv"), tmp_path / "cache")
    Trainer(validate_spec(learns, registry=reg), output=run, registry=reg, plots=False,
            report=False, overwrite=True, quiet=True).fit()
    assert not (run / "health.json").exists()  # an overwrite removes the earlier run's


def test_a_training_that_learns_gives_no_loss_warning(tmp_path, one_thread):
    reg = toy.registry()
    data = toy.write_data(tmp_path / "data" / "data.csv")
    spec = validate_spec(toy.spec_dict(data, tmp_path / "cache", epochs=3), registry=reg)
    trainer = Trainer(spec, output=tmp_path / "run", registry=reg, plots=False, quiet=True)
    trainer.fit()
    assert [w for w in trainer.health.warnings if w.check == LOSS_AT_CHANCE] == []


# -- the trainer's side, on a stand-in trainer --------------------------------------------------
def _trainer(history, *, sampler="shuffle", report=None, counts=(900, 100)):
    from types import SimpleNamespace

    from mmcore.heads.classification import ClassificationHead

    codes = np.repeat(np.arange(len(counts)), counts)
    head = ClassificationHead(4, "y", classes=[f"c{i}" for i in range(len(counts))],
                              label_smoothing=0.0)  # the chance levels below are plain CE's
    return SimpleNamespace(
        spec=SimpleNamespace(train=SimpleNamespace(epochs=10, lr=1e-3, sampler=sampler,
                                                   modality_dropout=0.0, modality_loss=0.0)),
        model=SimpleNamespace(heads={"y": head}),
        data=SimpleNamespace(streaming=False, class_codes=lambda split: codes,
                             num_rows=lambda split: 200),
        history=history, modality_report=report,
    )


def _epochs(loss, accuracy, n=3):
    return [{"epoch": e, "train/y.loss": loss, "validation/y.accuracy": accuracy}
            for e in range(1, n + 1)]


def test_after_epoch_uses_the_train_prior_or_uniform_with_the_balanced_sampler(tmp_path):
    at_prior = 0.33  # the entropy of 90/10 is 0.325, ln 2 is 0.693
    checks = HealthChecks(tmp_path / "health.json", lambda m: None)
    assert checks.after_epoch(_trainer(_epochs(at_prior, 0.9, n=2))) == []  # too early
    assert [w.epoch for w in checks.after_epoch(_trainer(_epochs(at_prior, 0.9)))] == [3]
    balanced = HealthChecks(tmp_path / "b.json", lambda m: None)
    assert balanced.after_epoch(_trainer(_epochs(at_prior, 0.9), sampler="balanced")) == []
    assert balanced.after_epoch(_trainer(_epochs(0.69, 0.5), sampler="balanced")) != []


def test_after_report_flags_only_the_modality_at_chance(tmp_path):
    from types import SimpleNamespace

    report = {"split": "test", "baseline": {"y.accuracy": 0.9}, "modalities": {
        "audio": {"only": {"y.accuracy": 0.26}}, "image": {"only": {"y.accuracy": 0.8}}}}
    targets = torch.arange(4).repeat(50)  # 4 classes, 200 rows: chance 0.25
    result = SimpleNamespace(targets={"y": targets})
    trainer = _trainer([], report=report, counts=(1, 1, 1, 1))
    found = HealthChecks(tmp_path / "health.json", lambda m: None).after_report(
        trainer, {"test": result})
    assert [(w.check, w.subject) for w in found] == [(MODALITY_AT_CHANCE, "audio")]
