"""Metrics against scikit-learn as the oracle (test-only): ties, absent classes, binary and
multi-class; ECE by hand; the monitor directions."""

from __future__ import annotations

import importlib
import importlib.util

import numpy as np
import pytest
import torch

from mmcore.heads.classification import ClassificationHead
from mmcore.heads.regression import RegressionHead
from mmcore.heads.targets import check_monitor
from mmcore.metrics import (
    auroc,
    average_precision,
    balanced_accuracy,
    expected_calibration_error,
    macro_one_vs_rest,
    r2_score,
)

if importlib.util.find_spec("sklearn") is None:
    pytest.skip("scikit-learn is the test oracle (pip install -e '.[test]')",
                allow_module_level=True)


class _Oracle:
    """``sklearn.metrics``, imported on first use: a test process that collects this module
    but runs none of its tests does not pay the two seconds of importing scikit-learn."""

    __test__ = False  # not a test class

    def __getattr__(self, name: str):
        if name.startswith("_"):  # what collection asks any object (``__test__``, ``_mock_name``)
            raise AttributeError(name)
        return getattr(importlib.import_module("sklearn.metrics"), name)


sk = _Oracle()


def _scores(n: int, seed: int, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(bool)
    s = rng.normal(size=n) + y
    if ties:
        s = np.round(s, 1)  # many tied scores
    return s, y


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_auroc_and_average_precision_match_scikit_learn(seed, ties):
    s, y = _scores(200, seed, ties)
    st, yt = torch.tensor(s).reshape(-1, 1), torch.tensor(y).reshape(-1, 1)
    assert auroc(st, yt).item() == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)
    assert average_precision(st, yt).item() == pytest.approx(
        sk.average_precision_score(y, s), abs=1e-12)


def test_a_class_absent_from_the_targets_gives_nan_and_is_left_out_of_macro():
    assert auroc(torch.tensor([[0.1], [0.9]]), torch.tensor([[True], [True]])).isnan().all()
    assert average_precision(torch.tensor([[0.1]]), torch.tensor([[False]])).isnan().all()
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=120)
    y = rng.integers(0, 3, 120)  # class 3 never occurs
    macro = macro_one_vs_rest(torch.tensor(probs), torch.tensor(y), auroc)
    expected = np.mean([sk.roc_auc_score(y == k, probs[:, k]) for k in range(3)])
    assert macro == pytest.approx(expected, abs=1e-12)


def test_multiclass_macro_ovr_matches_scikit_learn():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(5), size=300)
    y = rng.integers(0, 5, 300)
    p, t = torch.tensor(probs), torch.tensor(y)
    assert macro_one_vs_rest(p, t, auroc) == pytest.approx(
        sk.roc_auc_score(y, probs, multi_class="ovr", average="macro"), abs=1e-12)
    onehot = np.eye(5)[y]
    assert macro_one_vs_rest(p, t, average_precision) == pytest.approx(
        sk.average_precision_score(onehot, probs, average="macro"), abs=1e-12)


def test_every_column_at_once_matches_each_alone_with_ties_and_absent_classes():
    # the per-class figures come from one sort of all the columns: each column must be the
    # one scikit-learn gives it alone, tied scores (rounded) and classes absent included
    rng = np.random.default_rng(3)
    probs = np.round(rng.dirichlet(np.ones(12), size=90), 2)
    probs[:, 5] = 0.25  # one column of equal scores
    y = rng.integers(0, 10, 90)  # classes 10 and 11 never occur
    positive = torch.tensor(y).reshape(-1, 1) == torch.arange(12)
    areas = auroc(torch.tensor(probs), positive)
    precisions = average_precision(torch.tensor(probs), positive)
    for k in range(12):
        if k >= 10:
            assert areas[k].isnan() and precisions[k].isnan()
            continue
        assert areas[k].item() == pytest.approx(sk.roc_auc_score(y == k, probs[:, k]),
                                                abs=1e-12)
        assert precisions[k].item() == pytest.approx(
            sk.average_precision_score(y == k, probs[:, k]), abs=1e-12)


def test_a_nan_score_gives_nan_not_a_rank():
    # outputs that overflowed (NaN probabilities) must not score as a figure the monitor
    # could take for an improvement
    probs = torch.rand(8, 3)
    probs[2, 1] = float("nan")
    target = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    positive = target.reshape(-1, 1) == torch.arange(3)
    for score in (auroc, average_precision):
        values = score(probs, positive)
        assert values[1].isnan() and not values[0].isnan() and not values[2].isnan()
    assert np.isnan(macro_one_vs_rest(torch.full((8, 3), float("nan")), target, auroc))


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_balanced_accuracy_and_r2_match_scikit_learn():
    rng = np.random.default_rng(2)
    y, pred = rng.integers(0, 4, 150), rng.integers(0, 5, 150)  # class 4 only predicted
    assert balanced_accuracy(torch.tensor(pred), torch.tensor(y), 5) == pytest.approx(
        sk.balanced_accuracy_score(y, pred), abs=1e-12)
    truth = rng.normal(size=(80, 2))
    guess = truth + rng.normal(scale=0.5, size=(80, 2))
    assert r2_score(torch.tensor(guess), torch.tensor(truth)) == pytest.approx(
        sk.r2_score(truth, guess), abs=1e-12)
    constant = np.ones(10)
    for guess in (constant, constant + 0.5):  # a constant target: 1 if exact, else 0
        assert r2_score(torch.tensor(guess), torch.tensor(constant)) == pytest.approx(
            sk.r2_score(constant, guess))


def test_expected_calibration_error_by_hand():
    # 4 rows: confidences 0.95 (right), 0.95 (wrong), 0.55 (right), 0.55 (right); 15 bins
    probs = torch.tensor([[0.95, 0.05], [0.05, 0.95], [0.55, 0.45], [0.55, 0.45]])
    target = torch.tensor([0, 0, 0, 0])
    # bin of 0.95: mean confidence 0.95, accuracy 0.5 -> gap 0.45, share 1/2
    # bin of 0.55: mean confidence 0.55, accuracy 1.0 -> gap 0.45, share 1/2
    assert expected_calibration_error(probs, target) == pytest.approx(0.45)
    perfect = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(perfect, torch.tensor([0, 1])) == 0.0


def test_heads_report_them_and_the_monitor_knows_their_direction():
    head = ClassificationHead(4, "y", classes=["a", "b", "c"])
    outputs = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0], [2.0, 0.0, 0.0]])
    metrics = head.metrics(outputs, torch.tensor([0, 1, 2, 1]))
    assert {"balanced_accuracy", "auroc", "average_precision", "ece"} <= set(metrics)
    assert metrics["balanced_accuracy"] == pytest.approx((1 + 0.5 + 1) / 3)
    directions = check_monitor(None, {"y": ClassificationHead, "v": RegressionHead}, "<spec>")
    assert directions["y.auroc"] is True and directions["y.ece"] is False
    assert directions["v.mae"] is False and directions["v.r2"] is True


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_per_class_report_matches_scikit_learn():
    rng = np.random.default_rng(3)
    head = ClassificationHead(4, "y", classes=["a", "b", "c", "d"])
    logits = torch.tensor(rng.normal(size=(90, 4)), dtype=torch.float32)
    logits[:, 3] -= 10  # "d" is never predicted
    y = rng.integers(0, 3, 90)  # and never a target
    report = head.per_class(logits, torch.tensor(y))
    pred = logits.argmax(-1).numpy()
    p, r, f, s = sk.precision_recall_fscore_support(y, pred, labels=[0, 1, 2, 3],
                                                    zero_division=0)
    assert list(report) == ["a", "b", "c"]  # "d": support 0 and never predicted, left out
    predicted = np.bincount(pred, minlength=4)
    for k, label in enumerate("abc"):
        assert report[label]["precision"] == pytest.approx(p[k])
        assert report[label]["recall"] == pytest.approx(r[k])
        assert report[label]["f1"] == pytest.approx(f[k])
        assert report[label]["support"] == s[k]
        assert report[label]["predicted"] == predicted[k]


def test_the_per_class_report_keeps_a_class_predicted_but_never_a_target():
    head = ClassificationHead(3, "y", classes=["a", "b", "c"])
    logits = torch.tensor([[5.0, 0, 0], [0, 0, 5.0], [0, 0, 5.0]])  # predicts a, c, c
    report = head.per_class(logits, torch.tensor([0, 0, 0]))  # every target is a
    assert report == {
        "a": {"precision": 1.0, "recall": pytest.approx(1 / 3), "f1": 0.5, "support": 3,
              "predicted": 1},
        "c": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "predicted": 2},
    }


def test_evaluate_per_class_prints_a_predicted_column_and_hides_empty_classes(capsys):
    from mmcore.cli.evaluate import _print_per_class

    _print_per_class("digit", {
        "0": {"precision": 1.0, "recall": 0.5, "f1": 0.6667, "support": 4, "predicted": 2},
        "7": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "predicted": 3},
        "9": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "predicted": 0},
    })
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["digit:", "class", "precision", "recall", "f1", "support",
                                "predicted"]
    assert [line.split() for line in lines[1:]] == [
        ["0", "1.0000", "0.5000", "0.6667", "4", "2"],
        ["7", "0.0000", "0.0000", "0.0000", "0", "3"],
    ]
