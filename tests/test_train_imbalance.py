"""End to end: balanced class weights, the focal loss and the balanced sampler in a real run;
the fitted weights are saved with the run, and resume accepts the unchanged spec."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from mmcore.spec import validate_spec
from mmcore.train import Trainer
from tests import train_toy as toy

pytestmark = pytest.mark.usefixtures("one_thread")


def test_imbalance_options_train_save_and_resume(tmp_path):
    reg = toy.registry()
    path = toy.write_data(tmp_path / "data.csv", rows=90)
    header, *lines = path.read_text().splitlines()
    # keep one train row of class "c" in three: 18 a, 18 b, 6 c in train
    kept, seen = [], 0
    for line in lines:
        if ",c," in line and line.endswith(",train"):
            seen += 1
            if seen % 3:
                continue
        kept.append(line)
    path.write_text("\n".join([header, *kept]) + "\n")
    raw = toy.spec_dict(path, tmp_path / "cache", epochs=2, sampler="balanced")
    raw["heads"]["label"]["options"].update(class_weights="balanced", loss="focal")
    trainer = Trainer(validate_spec(raw, registry=reg), output=tmp_path / "run", registry=reg,
                      plots=False, quiet=True, report=False)
    trainer.fit()
    saved = json.loads((tmp_path / "run" / "spec.json").read_text())
    options = saved["heads"]["label"]["options"]
    assert options["class_weights"] == "balanced" and options["classes"] == toy.CLASSES
    assert options["fitted_class_weights"] == pytest.approx([42 / 54, 42 / 54, 42 / 18])
    assert saved["train"]["sampler"] == "balanced"
    head = trainer.model.heads["label"]
    assert head.class_weights.tolist() == pytest.approx(options["fitted_class_weights"])
    drawn: Counter[int] = Counter()
    for epoch in range(1, 11):
        for batch in trainer._loader("train", shuffle=True, epoch=epoch):
            drawn.update(batch.targets["label"].tolist())
    assert sum(drawn.values()) == 10 * 42  # each epoch draws as many rows as train has
    assert drawn[2] / 420 > 0.25  # about 1/3, where shuffling would give 6/42

    raw["train"]["epochs"] = 3
    again = Trainer(validate_spec(raw, registry=reg), output=tmp_path / "run", registry=reg,
                    plots=False, quiet=True, report=False, resume=True)
    again.fit()
    assert again.epoch == 3
    resumed = again.model.heads["label"].class_weights.tolist()
    assert resumed == pytest.approx(options["fitted_class_weights"])
