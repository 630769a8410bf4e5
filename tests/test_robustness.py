"""Every subset of modalities and exact Shapley values (mmcore.evaluate.ablation), on games
with known answers, through the masking the trainer uses, and from ``mmcore evaluate``."""

from __future__ import annotations

import itertools
import json
import math
import random

import pytest
import torch

from mmcore.batch import ModalityBatch
from mmcore.evaluate.ablation import robustness_report, shapley_values, subsets
from mmcore.evaluate.split import SplitResult


def _game(fn, names):
    return {frozenset(s): fn(set(s)) for s in subsets(names)}


def _by_permutations(value, names):
    """The Shapley value as its definition: the mean marginal gain over all orders."""
    out = dict.fromkeys(names, 0.0)
    orders = list(itertools.permutations(names))
    for order in orders:
        have: set[str] = set()
        for name in order:
            out[name] += value[frozenset(have | {name})] - value[frozenset(have)]
            have.add(name)
    return {n: v / len(orders) for n, v in out.items()}


def test_known_games():
    names = ["audio", "image", "text"]
    weights = {"audio": 0.1, "image": 0.3, "text": 0.0}
    additive = shapley_values(_game(lambda s: sum(weights[n] for n in s), names), names)
    assert additive == pytest.approx(weights)  # text is a null player: 0
    both = shapley_values(_game(lambda s: float({"audio", "image"} <= s), names), names)
    assert both == pytest.approx({"audio": 0.5, "image": 0.5, "text": 0.0})


def test_a_random_game_matches_the_definition_and_is_efficient():
    names = ["a", "b", "c", "d"]
    rng = random.Random(0)
    value = {frozenset(s): rng.random() for s in subsets(names)}
    phi = shapley_values(value, names)
    assert phi == pytest.approx(_by_permutations(value, names))
    assert sum(phi.values()) == pytest.approx(value[frozenset(names)] - value[frozenset()])


def test_the_report_hides_modalities_like_missing_data():
    weights = {"audio": 0.2, "image": 0.5}
    inputs = {m: ModalityBatch(torch.ones(3, 2), torch.ones(3, dtype=torch.bool))
              for m in weights}
    calls = []

    def evaluate(transform):  # "accuracy" = the weights of the modalities rows still have
        seen = transform(dict(inputs)) if transform is not None else inputs
        calls.append(sorted(m for m, b in seen.items() if bool(b.present.all())))
        score = 0.1 + sum(w for m, w in weights.items() if bool(seen[m].present.all()))
        return SplitResult({"y.accuracy": score}, 3)

    report = robustness_report(evaluate, list(weights), "y.accuracy", "test")
    assert sorted(map(tuple, calls[:4])) == [(), ("audio",), ("audio", "image"), ("image",)]
    assert [r["modalities"] for r in report["subsets"]] == [[], ["audio"], ["image"],
                                                             ["audio", "image"]]
    assert report["shapley"] == pytest.approx(weights)
    assert report["none"] == pytest.approx(0.1) and report["all"] == pytest.approx(0.8)


def test_mmcore_evaluate_robustness_writes_the_report(tmp_path, capsys):
    from mmcore.cli import main
    from mmcore.plugins.default import reset_registry
    from tests import train_toy as toy

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    reset_registry(toy.registry())
    try:
        data = toy.write_data(tmp_path / "data.csv")
        spec = toy.write_spec(tmp_path / "spec.py", toy.spec_dict(data, tmp_path / "cache"))
        assert main(["train", str(spec), "--output", str(tmp_path / "run"), "--quiet",
                     "--no-report", "train.epochs=2", "train.callbacks=[]"]) == 0
        capsys.readouterr()
        assert main(["evaluate", str(tmp_path / "run"), "--robustness", "--no-report"]) == 0
    finally:
        reset_registry(None)
        torch.set_num_threads(before)
    out = capsys.readouterr().out
    assert "robustness (test split, label.accuracy)" in out and "Shapley values" in out
    report = json.loads((tmp_path / "run" / "robustness.json").read_text())
    assert len(report["subsets"]) == 4 and set(report["shapley"]) == {"a", "b"}
    total = sum(report["shapley"].values())
    assert math.isclose(total, report["all"] - report["none"], abs_tol=1e-9)


def test_drop_curves_hide_a_growing_share_of_rows():
    n = 400
    inputs = {m: ModalityBatch(torch.ones(n, 2), torch.ones(n, dtype=torch.bool))
              for m in ("audio", "image")}

    def evaluate(transform):  # "accuracy" = the share of rows that still have audio
        seen = transform(dict(inputs)) if transform is not None else inputs
        return SplitResult({"y.accuracy": seen["audio"].present.float().mean().item()}, n)

    report = robustness_report(evaluate, ["audio", "image"], "y.accuracy", "test")
    audio = [(p["rate"], p["metrics"]["y.accuracy"]) for p in report["drop_curves"]["audio"]]
    assert [r for r, _ in audio] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert audio[0][1] == 1.0 and audio[-1][1] == 0.0
    for rate, kept in audio[1:-1]:
        assert kept == pytest.approx(1 - rate, abs=0.06)
    assert all(p["metrics"]["y.accuracy"] == 1.0 for p in report["drop_curves"]["image"][:-1])
