"""The modality report and the robustness report are two views of one evaluation of each
subset of modalities (mmcore.evaluate.ablation.SubsetEvaluations): ``mmcore evaluate
--robustness`` evaluates every subset once, and each report's figures are those of the subset
evaluated alone."""

from __future__ import annotations

import inspect
import json
from collections import Counter

import pytest
import torch

from mmcore.evaluate.ablation import (
    DROP_RATES,
    SubsetEvaluations,
    hiding,
    modality_report,
    robustness_report,
    subsets,
)
from mmcore.evaluate.split import SplitResult

DROP = "drop curve"


def _kept(transform, names) -> frozenset[str] | str:
    """The modalities a transform of the reports keeps (a drop curve's hides a share of rows)."""
    if transform is None:
        return frozenset(names)
    hidden = inspect.getclosurevars(transform).nonlocals.get("names")
    return DROP if hidden is None else frozenset(names) - frozenset(hidden)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from mmcore.cli import main
    from mmcore.plugins.default import reset_registry
    from tests import train_toy as toy

    tmp = tmp_path_factory.mktemp("ablation")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    reset_registry(toy.registry())
    try:
        data = toy.write_data(tmp / "data.csv")
        spec = toy.write_spec(tmp / "spec.py", toy.spec_dict(data, tmp / "cache"))
        assert main(["train", str(spec), "--output", str(tmp / "run"), "--quiet",
                     "--no-report", "train.epochs=2", "train.callbacks=[]"]) == 0
        yield tmp / "run"
    finally:
        reset_registry(None)
        torch.set_num_threads(before)


def test_evaluate_with_both_reports_evaluates_each_subset_once(run, monkeypatch, capsys):
    from mmcore.cli import main
    from mmcore.inference.predict import Predictor, load

    names = ["a", "b"]
    calls: list[frozenset[str] | str] = []
    evaluate = Predictor._evaluate

    def counted(self, dm, split, transform=None):
        calls.append(_kept(transform, names))
        return evaluate(self, dm, split, transform)

    evaluate_kept = Predictor._evaluate_kept
    passes: list[int] = []

    def counted_kept(self, dm, split, groups):  # several subsets, one pass of the encoders
        calls.extend(groups)
        passes.append(len(groups))
        return evaluate_kept(self, dm, split, groups)

    monkeypatch.setattr(Predictor, "_evaluate", counted)
    monkeypatch.setattr(Predictor, "_evaluate_kept", counted_kept)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--robustness", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    counts = Counter(calls)
    assert counts.pop(DROP) == len(names) * len(DROP_RATES)
    assert counts == {frozenset(group): 1 for group in subsets(names)}  # each subset once
    assert passes == [2]  # the modality report's "only a" and "only b" together

    # the figures: each subset's own evaluation, as the reports alone give them
    monkeypatch.setattr(Predictor, "_evaluate", evaluate)
    monkeypatch.setattr(Predictor, "_evaluate_kept", evaluate_kept)
    predictor = load(run)
    assert shown["modality_report"] == predictor.modality_report(save=False)
    assert shown["robustness"] == predictor.robustness(save=False)
    assert json.loads((run / "modality_report.json").read_text()) == shown["modality_report"]
    assert json.loads((run / "robustness.json").read_text()) == shown["robustness"]
    dm, split = predictor._split(None, None)
    for row in shown["robustness"]["subsets"]:
        alone = evaluate(predictor, dm, split, hiding(set(names) - set(row["modalities"])))
        assert row["metrics"] == pytest.approx(alone.metrics, abs=1e-6)
    for name, entry in shown["modality_report"]["modalities"].items():
        assert entry["without"] == pytest.approx(
            evaluate(predictor, dm, split, hiding({name})).metrics, abs=1e-6)
    assert shown["metrics"] == shown["modality_report"]["baseline"]
    # a report not asked for is neither evaluated nor written
    (run / "modality_report.json").unlink()
    assert set(predictor.evaluate(robustness=True)) == {"split", "rows", "metrics", "per_class",
                                                       "robustness"}
    assert not (run / "modality_report.json").exists()


def test_the_views_share_one_evaluation_per_subset():
    names = ["audio", "image", "text"]
    calls = []

    def evaluate(transform):
        kept = _kept(transform, names)
        calls.append(kept)
        return SplitResult({"y.accuracy": 0.1 + 0.2 * len(kept) if kept != DROP else 0.5}, 3)

    alone = (modality_report(evaluate, names, "y.accuracy", "test"),
             robustness_report(evaluate, names, "y.accuracy", "test"))
    calls.clear()
    evaluations = SubsetEvaluations(evaluate, names)
    from mmcore.evaluate.ablation import modality_view, robustness_view

    shared = (modality_view(evaluations, "y.accuracy", "test"),
              robustness_view(evaluations, "y.accuracy", "test"))
    assert shared == alone
    counts = Counter(calls)
    assert counts.pop(DROP) == len(names) * len(DROP_RATES)
    assert counts == {frozenset(group): 1 for group in subsets(names)}
