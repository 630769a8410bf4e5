"""Fine-tuning controls per modality: ``lr_scale``, ``weight_decay``, ``freeze`` and
``unfreeze_at`` (parameter groups, frozen encoders, resume across an unfreeze)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmcore.errors import SpecError
from mmcore.run import checkpoint as ck
from mmcore.spec import validate_spec
from mmcore.spec.model import ModalitySpec, TrainSpec
from mmcore.train import Trainer
from mmcore.train.optim import build_optimizer, parameter_groups
from tests import train_toy as toy

pytestmark = pytest.mark.usefixtures("one_thread")


def _spec(tmp_path, data, reg, a=None, **train):
    raw = toy.spec_dict(data, tmp_path / "cache", **{"callbacks": [], **train})
    raw["modalities"]["a"].update(a or {})
    return validate_spec(raw, registry=reg)


def _run(spec, out, reg, **kw) -> dict[str, torch.Tensor]:
    Trainer(spec, output=out, registry=reg, plots=False, quiet=True, report=False, **kw).fit()
    return ck.read_checkpoint(ck.latest_checkpoint(out / ck.CHECKPOINTS)).model


def _initial(spec, out, reg) -> dict[str, torch.Tensor]:
    """The weights before any step: a run whose learning rate is too small to move them."""
    tiny = spec.model_copy(update={"train": spec.train.model_copy(update={"lr": 1e-30})})
    return _run(tiny, out, reg)


def _part(weights, prefix):
    return {k: v for k, v in weights.items() if k.startswith(prefix)}


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict({"a": nn.Linear(2, 3), "b": nn.Linear(2, 3)})
        self.heads = nn.ModuleDict({"y": nn.Linear(3, 1)})


def test_parameter_groups_follow_each_modalitys_settings():
    model = Toy()
    modalities = {"a": ModalitySpec(column="x", lr_scale=0.1, weight_decay=0.0),
                  "b": ModalitySpec(column="z")}
    groups = parameter_groups(model, 0.5, 2e-3, modalities)
    a, b, head = model.encoders["a"], model.encoders["b"], model.heads["y"]
    assert [(g["name"], g["weight_decay"], g["lr"], {id(p) for p in g["params"]})
            for g in groups] == [
        ("shared", 0.5, 2e-3, {id(b.weight), id(head.weight)}),
        ("shared", 0.0, 2e-3, {id(b.bias), id(head.bias)}),
        ("encoders.a", 0.0, pytest.approx(2e-4), {id(a.weight)}),
        ("encoders.a", 0.0, pytest.approx(2e-4), {id(a.bias)}),
    ]
    assert groups[0]["name"] == "shared"  # the first group's lr is the one the trainer logs
    assert [g["lr"] for g in build_optimizer(model, TrainSpec(lr=2e-3), modalities).param_groups
            ] == pytest.approx([2e-3, 2e-3, 2e-4, 2e-4])


def test_unfreeze_at_needs_freeze():
    with pytest.raises(ValueError, match="unfreeze_at needs freeze"):
        ModalitySpec(column="x", unfreeze_at=2)
    with pytest.raises(SpecError, match="lr_scale"):
        validate_spec({"data": {"path": "d.csv"}, "heads": {"y": {"target": "y"}},
                       "modalities": {"a": {"plugin": "scaled", "column": "x", "lr_scale": 0}}},
                      registry=toy.registry())


def test_lr_scale_scales_the_encoders_first_update(tmp_path, data, reg):
    # one SGD step on the whole train split: its update is lr x lr_scale x the gradient
    train = {"epochs": 1, "batch_size": 64, "optimizer": "sgd", "weight_decay": 0.0,
             "grad_clip": None, "lr": 0.1}
    start = _initial(_spec(tmp_path, data, reg, **train), tmp_path / "r0", reg)
    plain = _run(_spec(tmp_path, data, reg, **train), tmp_path / "r1", reg)
    scaled = _run(_spec(tmp_path, data, reg, a={"lr_scale": 0.25}, **train), tmp_path / "r2",
                  reg)
    encoder = _part(start, "encoders.a.")
    for key in encoder:
        torch.testing.assert_close(scaled[key] - start[key], 0.25 * (plain[key] - start[key]))
    assert any(not torch.equal(plain[k], start[k]) for k in encoder)
    for key in _part(start, "heads."):  # the same gradient and learning rate elsewhere
        torch.testing.assert_close(scaled[key], plain[key])


def test_a_frozen_encoder_keeps_its_weights_bitwise_and_the_rest_trains(tmp_path, data, reg):
    spec = _spec(tmp_path, data, reg, a={"freeze": True}, epochs=2)
    start = _initial(spec, tmp_path / "r0", reg)
    end = _run(spec, tmp_path / "r1", reg)
    frozen = _part(start, "encoders.a.")
    assert frozen and all(torch.equal(end[k], v) for k, v in frozen.items())
    assert any(not torch.equal(end[k], v) for k, v in _part(start, "encoders.b.").items())
    assert any(not torch.equal(end[k], v) for k, v in _part(start, "fusion.").items())


def test_unfreeze_at_trains_the_encoder_from_that_epoch_and_resumes_exactly(tmp_path, data,
                                                                            reg):
    spec = _spec(tmp_path, data, reg, a={"freeze": True, "unfreeze_at": 2}, epochs=3)
    start = _initial(spec, tmp_path / "r0", reg)
    whole = _run(spec, tmp_path / "whole", reg)
    first = ck.read_checkpoint(tmp_path / "whole" / ck.CHECKPOINTS / "epoch-0002")
    assert any(not torch.equal(whole[k], v) for k, v in _part(start, "encoders.a.").items())

    one = spec.model_copy(update={"train": spec.train.model_copy(update={"epochs": 1})})
    after_one = _run(one, tmp_path / "parts", reg)
    assert all(torch.equal(after_one[k], v) for k, v in _part(start, "encoders.a.").items())
    resumed = _run(spec, tmp_path / "parts", reg, resume=True)
    assert resumed.keys() == whole.keys()
    assert all(torch.equal(resumed[k], whole[k]) for k in whole)
    assert first.epoch == 2
