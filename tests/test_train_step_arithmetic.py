"""The training step's shortcuts change no number: ``weighted_loss`` starting its sum at the
first term and skipping ``* 1``, the step skipping ``/ 1`` and the no-op autocast give the
values, gradients and trained weights of the plain formulas they replace, bit for bit."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from mmcore.evaluate.masking import modality_dropout
from mmcore.evaluate.split import autocast_context, weighted_loss
from mmcore.spec import validate_spec
from mmcore.train import Trainer
from mmcore.train.modality_loss import alone_loss
from tests import train_toy as toy

pytestmark = pytest.mark.usefixtures("one_thread")


def plain_weighted_loss(model, outputs, targets, weights):
    """``weighted_loss`` as it was first written: ``sum(weight * loss, start=0)``."""
    names = [name for name in model.heads if name in targets]
    losses = [model.heads[name].loss(outputs[name], targets[name]) for name in names]
    total = sum((weights[name] * loss for name, loss in zip(names, losses, strict=True)),
                start=torch.zeros((), device=losses[0].device))
    return total, losses


class Heads(torch.nn.Module):
    """A stand-in model: heads whose loss is the mean of their output times a constant."""

    class Head(torch.nn.Module):
        def __init__(self, scale: float, dtype: torch.dtype) -> None:
            super().__init__()
            self.scale, self.dtype = scale, dtype

        def loss(self, output, target):
            return (output.to(self.dtype) * target).mean() * self.scale

    def __init__(self, scales: dict[str, float], dtype: torch.dtype) -> None:
        super().__init__()
        self.heads = torch.nn.ModuleDict({n: self.Head(s, dtype) for n, s in scales.items()})


@pytest.mark.parametrize("weights", [{"a": 1.0}, {"a": 1.0, "b": 0.5}, {"a": 2.0, "b": 3},
                                     {"a": 0.3, "b": 1.0, "c": 1e-3}])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
def test_weighted_loss_gives_the_plain_sums_value_and_gradients(weights, dtype) -> None:
    model = Heads({n: 1.7 + i for i, n in enumerate(weights)}, dtype)
    torch.manual_seed(0)
    base = {n: torch.randn(5, 3) for n in weights}
    targets = {n: torch.randn(5, 3).to(dtype) for n in weights}
    results = []
    for fn in (weighted_loss, plain_weighted_loss):
        outputs = {n: v.clone().requires_grad_(True) for n, v in base.items()}
        total, losses = fn(model, outputs, targets, weights)
        (total / 3).backward()
        results.append((total.detach(), [x.detach() for x in losses],
                        {n: v.grad for n, v in outputs.items()}))
    (total, losses, grads), (want, want_losses, want_grads) = results
    assert total.dtype == want.dtype and total.shape == want.shape
    assert torch.equal(total, want)
    assert all(torch.equal(a, b) for a, b in zip(losses, want_losses, strict=True))
    assert all(torch.equal(grads[n], want_grads[n]) for n in weights)


def plain_train_step(self, batch, progress, params) -> bool:
    """``Trainer._train_step`` written without shortcuts: the autocast context always
    entered, the loss always divided by its window, ``sum(weight * loss, start=0)``."""
    model, net, train = self.model, self.net, self.spec.train
    inputs = {k: self.data.modalities[k].augment(v, progress.augment)
              for k, v in batch.inputs.items()}
    if train.modality_dropout > 0:
        inputs = modality_dropout(inputs, train.modality_dropout, progress.dropout)
    targets = batch.targets
    ends_window, window = progress.window()
    with self.strategy.sync_gradients(net, ends_window):
        with autocast_context(self.device, train.precision):
            if train.modality_loss > 0 and len(inputs) > 1:
                outputs, alone = net(inputs, alone=True)
            else:
                outputs, alone = net(inputs), None
        total, losses = plain_weighted_loss(model, outputs, targets, self.weights)
        if alone is not None:
            total = total + train.modality_loss * alone_loss(model, alone, targets,
                                                             self.weights)
        (total / window).backward()
    progress.add(torch.stack([total, *losses]).detach(), len(batch))
    if ends_window:
        self._optimizer_step(params)
    return ends_window


def _two_heads(spec: dict[str, Any]) -> dict[str, Any]:
    spec["heads"]["label"]["weight"] = 0.7
    spec["heads"]["sum"] = {"kind": "regression", "target": "s", "weight": 1.3,
                            "options": {"hidden": [4]}}
    return spec


@pytest.mark.parametrize("case", [
    {},  # the defaults: one head, the modality loss on
    {"modality_loss": 0.0},  # the independent-loop benchmark's setting
    {"accumulate": 3, "modality_dropout": 0.4},
    {"heads": "two", "modality_loss": 0.5},
])
def test_training_gives_the_weights_of_the_plain_step(tmp_path, monkeypatch, case) -> None:
    case = dict(case)
    two = case.pop("heads", None) == "two"
    data = toy.write_data(tmp_path / "data.csv")
    reg = toy.registry()
    runs = {}
    for arm in ("trainer", "plain"):
        spec_dict = toy.spec_dict(data, tmp_path / "cache", epochs=2, callbacks=[], **case)
        spec = validate_spec(_two_heads(spec_dict) if two else spec_dict, registry=reg)
        with monkeypatch.context() as patch:
            if arm == "plain":
                patch.setattr(Trainer, "_train_step", plain_train_step)
            trainer = Trainer(spec, output=tmp_path / arm, registry=reg, plots=False,
                              report=False, quiet=True)
            trainer.fit()
        runs[arm] = (load_file(str(tmp_path / arm / "model.safetensors")),
                     [{k: v for k, v in r.items() if k != "seconds"} for r in trainer.history])
    (weights, history), (want_weights, want_history) = runs["trainer"], runs["plain"]
    assert weights.keys() == want_weights.keys()
    assert all(torch.equal(weights[k], want_weights[k]) for k in weights)
    assert history == want_history
