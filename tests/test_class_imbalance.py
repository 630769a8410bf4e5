"""Class weights and the focal loss of the classification head, against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch.nn import functional as F

from mmcore.errors import DataError
from mmcore.heads.classification import ClassificationHead
from mmcore.heads.imbalance import balanced_weights, focal_loss
from mmcore.heads.options import ClassificationOptions


def _head(**options) -> ClassificationHead:
    """A head whose loss is compared with hand-written formulas: no label smoothing unless
    given (the default smooths the cross-entropy)."""
    defaults = {"classes": ["a", "b", "c"], "label_smoothing": 0.0}
    if options.get("loss") == "focal":
        defaults.pop("label_smoothing")
    return ClassificationHead(4, "y", **{**defaults, **options})


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(7, 3, generator=g), torch.tensor([0, 0, 0, 1, 1, 2, 0])


def _numpy_focal(logits: np.ndarray, target: np.ndarray, gamma: float, alpha=None) -> float:
    z = logits - logits.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    pt = p[np.arange(len(target)), target]
    a = np.ones(len(target)) if alpha is None else np.asarray(alpha)[target]
    return float((a * -((1 - pt) ** gamma) * np.log(pt)).sum() / a.sum())


def test_balanced_weights_follow_the_sklearn_formula():
    values = ["a"] * 5 + ["b"] * 3 + ["c"]
    got = balanced_weights(values, ["a", "b", "c"])
    assert got == pytest.approx([9 / (3 * 5), 9 / (3 * 3), 9 / (3 * 1)])


def test_balanced_weights_are_capped_on_a_long_tail():
    # sklearn's weights would be 30x apart; a few singleton rows would dominate the loss
    values = ["a"] * 30 + ["b"] + ["c"]
    got = balanced_weights(values, ["a", "b", "c"])
    assert got == pytest.approx([32 / (3 * 30), 32 / (3 * 6), 32 / (3 * 6)])
    assert max(got) / min(got) == pytest.approx(5.0)


def test_a_class_absent_from_train_gets_a_finite_weight():
    got = balanced_weights(["a", "a", "b"], ["a", "b", "c"])
    assert all(np.isfinite(got)) and got[2] == pytest.approx(3 / 3)


def test_fit_targets_stores_balanced_numbers_and_keeps_the_option():
    values = [2, 1, 1, 1, np.int64(2), 3]
    fitted = ClassificationHead.fit_targets(values, {"class_weights": "balanced"})
    assert fitted["classes"] == [1, 2, 3]
    assert fitted["fitted_class_weights"] == pytest.approx([6 / 9, 6 / 6, 6 / 3])
    assert "class_weights" not in fitted  # the spec keeps "balanced", so resume compares equal
    head = ClassificationHead(4, "y", class_weights="balanced", **fitted)
    assert head.class_weights.tolist() == pytest.approx(fitted["fitted_class_weights"])


def test_fit_targets_resolves_a_dict_and_checks_a_list():
    fitted = ClassificationHead.fit_targets(["x", "y", "z"], {"class_weights": {"z": 4.0}})
    assert fitted["fitted_class_weights"] == [1.0, 1.0, 4.0]
    with pytest.raises(DataError, match="class_weights has 2 value.*3 classes"):
        ClassificationHead.fit_targets(["x", "y", "z"], {"class_weights": [1.0, 2.0]})
    with pytest.raises(DataError, match="'w', which is not a class"):
        ClassificationHead.fit_targets(["x", "y", "z"], {"class_weights": {"w": 2.0}})


def test_class_weights_change_the_loss_exactly_as_torch_weighted_cross_entropy():
    logits, target = _batch()
    weights = [0.5, 2.0, 3.0]
    head = _head(class_weights=weights)
    per_row = -F.log_softmax(logits, -1)[torch.arange(7), target]
    w = torch.tensor(weights)[target]
    expected = (w * per_row).sum() / w.sum()
    assert head.loss(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)
    assert _head().loss(logits, target).item() == pytest.approx(per_row.mean().item(), rel=1e-6)
    by_name = _head(class_weights={"b": 2.0, "c": 3.0, "a": 0.5})
    assert by_name.loss(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("gamma", [0.5, 2.0, 5.0])
@pytest.mark.parametrize("alpha", [None, [0.25, 1.0, 2.0]])
def test_focal_loss_matches_a_numpy_reference(gamma, alpha):
    logits, target = _batch(1)
    head = _head(loss="focal", focal_gamma=gamma, class_weights=alpha)
    expected = _numpy_focal(logits.double().numpy(), target.numpy(), gamma, alpha)
    assert head.loss(logits, target).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("weight", [None, torch.tensor([0.25, 1.0, 2.0])])
def test_focal_with_gamma_zero_equals_cross_entropy(weight):
    logits, target = _batch(2)
    got = focal_loss(logits, target, 0.0, weight)
    assert got.item() == pytest.approx(F.cross_entropy(logits, target, weight=weight).item(),
                                       rel=1e-6)


def test_focal_loss_down_weights_easy_rows_and_has_finite_gradients():
    logits = torch.tensor([[20.0, 0.0, 0.0], [0.0, 0.1, 0.0]], requires_grad=True)
    target = torch.tensor([0, 0])
    loss = focal_loss(logits, target, 2.0)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert loss.item() < F.cross_entropy(logits, target).item()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"loss": "focal", "label_smoothing": 0.1}, "cannot be combined with label_smoothing"),
        ({"class_weights": [1.0, 2.0]}, "class_weights has 2 value.*classes has 3"),
        ({"class_weights": [1.0, 0.0, 1.0]}, "finite number > 0"),
        ({"class_weights": {"d": 1.0}}, "'d', which is not one of classes"),
        ({"class_weights": "often"}, "class_weights"),
        ({"focal_gamma": -1}, "focal_gamma"),
    ],
)
def test_bad_options_are_rejected_naming_the_field(options, message):
    with pytest.raises(ValidationError, match=message):
        ClassificationOptions.model_validate({"classes": ["a", "b", "c"], **options})


def test_class_weights_follow_the_head_to_its_device_and_dtype():
    head = _head(class_weights=[1.0, 2.0, 3.0]).to(torch.float64)
    logits, target = _batch()
    assert head.class_weights.dtype == torch.float64
    assert torch.isfinite(head.loss(logits, target))
    assert "class_weights" not in head.state_dict()
