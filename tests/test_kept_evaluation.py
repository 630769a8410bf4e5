"""The modality and robustness reports from one pass of the encoders: evaluating with only a
group of modalities kept (``model(inputs, kept=...)``, the others' features made absent) gives
what hiding the others' inputs gives, for every built-in fusion and for an ensemble; and the
reports ask for their subsets together."""

from __future__ import annotations

import pytest
import torch

from mmcore.batch import Batch
from mmcore.evaluate.ablation import SubsetEvaluations, hiding, modality_view, subsets
from mmcore.evaluate.split import evaluate_kept, evaluate_model
from mmcore.heads.classification import ClassificationHead
from mmcore.model import EnsembleModel, compose_model
from tests.test_fusions import CASES, build
from tests.toy import ToyModality, ToyOptions

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ("a", "b", "c")
GROUPS = [frozenset(g) for g in subsets(NAMES)]  # every subset, the empty one too


def _model(case: str, seed: int = 0):
    torch.manual_seed(seed)
    modalities = {n: ToyModality(n, ToyOptions(hidden=6, output="sequence" if n == "b"
                                               else "pooled")) for n in NAMES}
    encoders = {n: m.build_encoder() for n, m in modalities.items()}
    fusion = build(case, {n: e.output_size for n, e in encoders.items()})
    head = ClassificationHead(fusion.output_size, "y", classes=["x", "y", "z"])
    return compose_model(encoders, fusion, {"label": head}).eval(), modalities


def _batches(modalities) -> list[Batch]:
    generator = torch.Generator().manual_seed(1)
    out, row = [], 0
    for size in (5, 3):
        inputs = {}
        for n, modality in modalities.items():
            items = [None if (i + len(n)) % 4 == 0 else
                     torch.randn(1 + (i % 3), generator=generator).numpy()
                     for i in range(size)]
            inputs[n] = modality.collate(items)
        targets = {"label": torch.randint(0, 3, (size,), generator=generator)}
        out.append(Batch(inputs, targets, torch.arange(row, row + size)))
        row += size
    return out


def _assert_same(kept, hidden) -> None:
    for name, value in hidden.outputs.items():
        torch.testing.assert_close(kept.outputs[name], value, atol=1e-5, rtol=1e-5)
    assert kept.metrics == pytest.approx(hidden.metrics, abs=1e-5)


@pytest.mark.parametrize("case", list(CASES))
def test_kept_groups_equal_hidden_inputs_for_every_fusion(case: str) -> None:
    model, modalities = _model(case)
    batches = _batches(modalities)
    options = {"device": torch.device("cpu"), "weights": {"label": 1.0}}
    kept = evaluate_kept(model, batches, GROUPS, **options)
    for group, result in zip(GROUPS, kept, strict=True):
        hidden = evaluate_model(model, batches, transform=hiding(set(NAMES) - group), **options)
        _assert_same(result, hidden)


def test_an_ensemble_averages_each_kept_group() -> None:
    members = [_model("concat", seed)[0] for seed in (0, 1)]
    model = EnsembleModel(members).eval()
    batches = _batches(_model("concat")[1])
    options = {"device": torch.device("cpu"), "weights": {"label": 1.0}}
    groups = [frozenset({"a"}), frozenset({"b", "c"})]
    for group, result in zip(groups, evaluate_kept(model, batches, groups, **options),
                             strict=True):
        hidden = evaluate_model(model, batches, transform=hiding(set(NAMES) - group), **options)
        _assert_same(result, hidden)


def test_the_modality_report_asks_for_its_subsets_in_one_pass() -> None:
    asked: list[list[frozenset[str]]] = []
    transforms: list[object] = []
    model, modalities = _model("concat")
    batches = _batches(modalities)
    options = {"device": torch.device("cpu"), "weights": {"label": 1.0}}

    def evaluate(transform):
        transforms.append(transform)
        return evaluate_model(model, batches, transform=transform, **options)

    def together(groups):
        asked.append(groups)
        return evaluate_kept(model, batches, groups, **options)

    report = modality_view(SubsetEvaluations(evaluate, NAMES, together), "label.accuracy",
                           "test")
    assert transforms == [None]  # the full model alone, as trained
    assert len(asked) == 1 and set(asked[0]) == {
        *(frozenset(set(NAMES) - {n}) for n in NAMES), *(frozenset({n}) for n in NAMES)}
    slow = modality_view(SubsetEvaluations(evaluate, NAMES), "label.accuracy", "test")
    for name in NAMES:
        for side in ("without", "only"):
            assert report["modalities"][name][side] == pytest.approx(
                slow["modalities"][name][side], abs=1e-5)
