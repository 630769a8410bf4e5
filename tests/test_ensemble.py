"""``train.ensemble``: k members of one spec trained together, each on its own loss (the sum's
gradient is each member's own), clipped apart, frozen together, predicting the average of their
probabilities; a run folder of an ensemble loads and predicts what training measured."""

from __future__ import annotations

import csv

import pytest
import torch
from safetensors.torch import load_file

import mmcore
from mmcore.errors import CheckpointError
from mmcore.heads.classification import ClassificationHead
from mmcore.heads.multilabel import MultiLabelHead
from mmcore.heads.regression import RegressionHead
from mmcore.model import EnsembleModel, build_model
from mmcore.spec import validate_spec
from mmcore.train import Trainer
from mmcore.train.modality_loss import step_loss
from mmcore.train.optim import optimizer_step, parameter_groups, set_frozen
from tests import train_toy as toy

pytestmark = pytest.mark.usefixtures("one_thread")


def _outputs(seed: int, shape=(5, 3)) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator) * 3 for _ in range(4)]


def test_heads_average_their_members_predictions():
    outputs = _outputs(0)
    classification = ClassificationHead(4, "y", classes=["a", "b", "c"])
    mean_probs = torch.stack([o.softmax(-1) for o in outputs]).mean(0)
    assert torch.allclose(classification.average(outputs).softmax(-1), mean_probs, atol=1e-6)
    multilabel = MultiLabelHead(4, "y", classes=["a", "b", "c"])
    mean_sigmoid = torch.stack([o.sigmoid() for o in outputs]).mean(0)
    assert torch.allclose(multilabel.average(outputs).sigmoid(), mean_sigmoid, atol=1e-6)
    regression = RegressionHead(4, "y", size=3)
    assert torch.allclose(regression.average(outputs), torch.stack(outputs).mean(0))


def test_a_spec_with_ensemble_builds_members_with_their_own_weights(tmp_path, data, reg):
    model = build_model(toy.labelled(tmp_path, data, reg, ensemble=3), registry=reg)
    assert isinstance(model, EnsembleModel) and len(model.members) == 3
    first, second = (dict(m.named_parameters()) for m in model.members[:2])
    assert not all(torch.equal(first[k], second[k]) for k in first)  # other initial weights
    assert model.heads is model.members[0].heads  # the parts a reader looks at
    single = build_model(toy.labelled(tmp_path, data, reg), registry=reg)
    assert not isinstance(single, EnsembleModel)


def test_the_averaged_forward_is_the_heads_average_of_the_members(tmp_path, data, reg):
    model = build_model(toy.labelled(tmp_path, data, reg, ensemble=2), registry=reg).eval()
    batch = _toy_batch()
    with torch.no_grad():
        out = model(batch)["label"]
        members = [m(batch)["label"] for m in model.members]
        fused, alone = model(batch, alone=True)
    mean = torch.stack([o.softmax(-1) for o in members]).mean(0)
    assert torch.allclose(out.softmax(-1), mean, atol=1e-6)
    assert torch.equal(fused["label"], out) and set(alone) == {"a", "b"}


def _toy_batch():
    from tests.toy import ToyModality, ToyOptions

    values = [10.0, 11.0, 12.0, 10.5]
    batch = {}
    for name in ("a", "b"):
        modality = ToyModality(name, ToyOptions(hidden=8))
        batch[name] = modality.collate([modality.preprocess(v) for v in values])
    return batch


def test_each_member_gets_the_gradient_it_would_get_alone(tmp_path, data, reg):
    model = build_model(toy.labelled(tmp_path, data, reg, ensemble=2), registry=reg)
    inputs = _toy_batch()
    targets = {"label": torch.tensor([0, 1, 2, 0])}
    weights = {"label": 1.0}
    objective, logged = step_loss(model, model, inputs, targets, weights, modality_loss=1.0)
    objective.backward()
    together = [{k: p.grad.clone() for k, p in m.named_parameters()} for m in model.members]
    alone = []
    for member in model.members:
        member.zero_grad()
        total, _ = step_loss(member, member, inputs, targets, weights, modality_loss=1.0)
        total.backward()
        alone.append({k: p.grad.clone() for k, p in member.named_parameters()})
    for got, want in zip(together, alone, strict=True):
        assert all(torch.allclose(got[k], want[k], atol=1e-6) for k in want)
    assert logged.shape == (2,)  # [total, label]: the members' mean, as one model reports
    assert torch.allclose(logged[0], objective / 2)


def test_gradients_are_clipped_member_by_member():
    members = [torch.nn.Parameter(torch.zeros(2)) for _ in range(2)]
    members[0].grad = torch.tensor([3.0, 4.0])  # norm 5
    members[1].grad = torch.tensor([0.3, 0.4])  # norm 0.5: under the limit, kept
    optimizer = torch.optim.SGD(members, lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    optimizer_step(optimizer, scheduler, None, [[members[0]], [members[1]]], grad_clip=1.0)
    assert torch.allclose(members[0].data, -torch.tensor([0.6, 0.8]))
    assert torch.allclose(members[1].data, -torch.tensor([0.3, 0.4]))


def test_freezing_and_per_modality_groups_reach_every_member(tmp_path, data, reg):
    spec = toy.spec_dict(data, tmp_path / "cache", ensemble=2)
    spec["modalities"]["a"]["lr_scale"] = 0.1
    spec["heads"]["label"]["options"]["classes"] = toy.CLASSES
    spec = validate_spec(spec, registry=reg)
    model = build_model(spec, registry=reg)
    groups = parameter_groups(model, 0.01, 1.0, spec.modalities)
    scaled = {id(p) for g in groups if g["name"] == "encoders.a" for p in g["params"]}
    for member in model.members:
        assert {id(p) for p in member.encoders["a"].parameters()} <= scaled
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    set_frozen(model, optimizer, frozenset({"b"}))
    for member in model.members:
        assert member.frozen == frozenset({"b"})
        assert not any(p.requires_grad for p in member.encoders["b"].parameters())
        assert all(p.requires_grad for p in member.encoders["a"].parameters())


def test_an_ensemble_run_trains_saves_and_predicts_what_it_measured(tmp_path, data, reg):
    run = tmp_path / "run"
    trainer = Trainer(toy.labelled(tmp_path, data, reg, ensemble=3, epochs=4), output=run,
                      registry=reg, plots=False, quiet=True)
    final = trainer.fit()
    assert isinstance(trainer.model, EnsembleModel)
    card = (run / "README.md").read_text()
    assert "ensemble=3" in card and "parameters x 3 members)" in card
    predictor = mmcore.load(run, registry=reg)
    assert isinstance(predictor.model, EnsembleModel) and len(predictor.model.members) == 3
    assert predictor.evaluate("test")["metrics"] == pytest.approx(final["test"])
    with open(data, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "test"]
    predictions = predictor.predict([{"x": r["x"], "z": r["z"]} for r in rows])
    right = sum(p["label"]["label"] == r["y"] for p, r in zip(predictions, rows, strict=True))
    assert right / len(rows) == pytest.approx(final["test"]["label.accuracy"])


def test_the_first_member_trains_as_one_model_and_the_others_in_their_own_order(
        tmp_path, data, reg, monkeypatch):
    """Member 0 has one model's initial weights and order (no dropout here), and its
    gradient is its own: its weights after 2 epochs are one model's. The other members see
    the training rows in other orders."""
    orders = []
    step = Trainer._train_step

    def recording(self, batch, progress, params):
        orders.append([b.index.tolist() for b in batch])
        return step(self, batch, progress, params)

    single = tmp_path / "single"
    Trainer(toy.labelled(tmp_path, data, reg, epochs=2), output=single, registry=reg, plots=False,
            report=False, quiet=True).fit()
    monkeypatch.setattr(Trainer, "_train_step", recording)
    ensemble = tmp_path / "ensemble"
    Trainer(toy.labelled(tmp_path, data, reg, epochs=2, ensemble=2), output=ensemble, registry=reg,
            plots=False, report=False, quiet=True).fit()
    last = "checkpoints/epoch-0002/model.safetensors"
    one, both = load_file(str(single / last)), load_file(str(ensemble / last))
    assert one.keys() == {k.removeprefix("members.0.") for k in both if k.startswith("members.0.")}
    for key, value in one.items():
        torch.testing.assert_close(both[f"members.0.{key}"], value, atol=1e-6, rtol=0)
    first, second = zip(*orders, strict=True)
    assert sorted(sum(first[:5], [])) == sorted(sum(second[:5], []))  # epoch 1: every row
    assert list(first) != list(second)


def test_an_ensemble_resumes_exactly(tmp_path, data, reg):
    """Stopped after epoch 1 and resumed, an ensemble (every member's weights, optimizer
    state and order of the rows) ends where an uninterrupted run does."""
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    Trainer(toy.labelled(tmp_path, data, reg, epochs=2, ensemble=2), output=whole, registry=reg,
            plots=False, report=False, quiet=True).fit()
    Trainer(toy.labelled(tmp_path, data, reg, epochs=1, ensemble=2), output=parts, registry=reg,
            plots=False, report=False, quiet=True).fit()
    Trainer(toy.labelled(tmp_path, data, reg, epochs=2, ensemble=2), output=parts, registry=reg,
            plots=False, report=False, quiet=True, resume=True).fit()
    last = "checkpoints/epoch-0002/model.safetensors"
    a, b = load_file(str(whole / last)), load_file(str(parts / last))
    assert a.keys() == b.keys() and any(k.startswith("members.1.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resuming_with_another_number_of_members_is_refused_and_keeps_the_run(
        tmp_path, data, reg):
    run = tmp_path / "run"
    Trainer(toy.labelled(tmp_path, data, reg, epochs=1, ensemble=2), output=run, registry=reg,
            plots=False, report=False, quiet=True).fit()
    saved = (run / "spec.json").read_text()
    for members in (3, 1):
        with pytest.raises(CheckpointError, match=f"train.ensemble: 2 in the run, {members} now"):
            Trainer(toy.labelled(tmp_path, data, reg, epochs=2, ensemble=members), output=run,
                    registry=reg, plots=False, report=False, quiet=True, resume=True).fit()
    assert (run / "spec.json").read_text() == saved  # the finished run still loads
    assert len(mmcore.load(run, registry=reg).model.members) == 2
