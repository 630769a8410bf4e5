"""``train.ema``: the run stands for an exponential moving average of its weights: validated
(the best epoch chosen on it), saved in every checkpoint's ``model.safetensors``, evaluated at
the end, and resumed exactly, the weights being trained kept apart in the trainer state."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import mmcore
from mmcore.errors import SpecError
from mmcore.spec import validate_spec
from mmcore.train import Trainer
from mmcore.train.settings import resolve_ema
from mmcore.train.weight_average import WeightAverage
from tests import train_toy as toy

pytestmark = pytest.mark.usefixtures("one_thread")


def _fit(spec, out, reg, **kwargs):
    trainer = Trainer(spec, output=out, registry=reg, plots=False, report=False, quiet=True,
                      **kwargs)
    trainer.fit()
    return trainer


def test_the_average_copies_then_moves_by_one_minus_decay_and_applies_for_a_block():
    model = nn.BatchNorm1d(2)  # a weight, a float buffer and an integer one
    average = WeightAverage(0.75)
    assert not average.ready
    with torch.no_grad():
        model.weight.fill_(4.0)
        model.num_batches_tracked.fill_(3)
    average.update(model)  # the first step copies
    with torch.no_grad():
        model.weight.fill_(8.0)
        model.num_batches_tracked.fill_(5)
    average.update(model)
    with average.applied(model):
        assert torch.equal(model.weight, torch.full((2,), 5.0))  # 0.75 * 4 + 0.25 * 8
        assert int(model.num_batches_tracked) == 5  # copied, not averaged
    assert torch.equal(model.weight, torch.full((2,), 8.0))  # its own weights back
    off = WeightAverage(None)
    off.update(model)
    assert not off.ready
    with off.applied(model):
        assert torch.equal(model.weight, torch.full((2,), 8.0))


class _IndependentAverage:
    """The EMA of the trained weights kept by a user's callback after every batch (each one
    an optimizer step here), to check the run's against."""

    def __init__(self, decay):
        self.decay, self.average = decay, None

    @mmcore.hookimpl
    def on_train_batch_end(self, trainer, batch):
        state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        if self.average is None:
            self.average = state
            return
        for key, value in state.items():
            if value.is_floating_point():
                self.average[key] = self.decay * self.average[key] + (1 - self.decay) * value
            else:
                self.average[key] = value


def test_the_run_validates_saves_and_evaluates_the_average(tmp_path, data, reg):
    independent = _IndependentAverage(0.9)
    run = tmp_path / "run"
    trainer = _fit(toy.labelled(tmp_path, data, reg, epochs=3, ema=0.9), run, reg,
                   callbacks=[independent])
    saved = load_file(str(run / "checkpoints/epoch-0003/model.safetensors"))
    assert saved.keys() == independent.average.keys()
    for key, value in saved.items():
        assert torch.allclose(value, independent.average[key], atol=1e-6), key
    # the weights being trained differ from the average and stay in the trainer state
    state = load_file(str(run / "checkpoints/epoch-0003/trainer_state.safetensors"))
    trained = {k: state[f"state/training_weights/{k}"] for k in saved}
    assert not all(torch.equal(saved[k], trained[k]) for k in saved)
    # the final figures are the best epoch's average's, as validation measured them
    best = next(r for r in trainer.history if r["epoch"] == trainer.best_epoch)
    assert trainer.final_metrics["validation"]["label.accuracy"] == pytest.approx(
        best["validation/label.accuracy"])
    loaded = mmcore.load(run, registry=reg)
    assert loaded.evaluate("test", save=False)["metrics"] == pytest.approx(
        trainer.final_metrics["test"])
    assert "ema=0.9" in (run / "README.md").read_text()  # the model card says so


def test_a_run_with_an_average_resumes_exactly(tmp_path, data, reg):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    _fit(toy.labelled(tmp_path, data, reg, epochs=3, ema=0.9), whole, reg)
    _fit(toy.labelled(tmp_path, data, reg, epochs=1, ema=0.9), parts, reg)
    _fit(toy.labelled(tmp_path, data, reg, epochs=3, ema=0.9), parts, reg, resume=True)
    for name in ("model.safetensors", "trainer_state.safetensors"):
        a = load_file(str(whole / "checkpoints/epoch-0003" / name))
        b = load_file(str(parts / "checkpoints/epoch-0003" / name))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    state = json.loads((whole / "checkpoints/epoch-0003/trainer_state.json").read_text())
    assert "training_weights" in state["state"]


def test_resuming_without_the_average_trains_on_from_the_trained_weights(tmp_path, data, reg):
    """The average steers nothing in training: turning ``train.ema`` off on resume trains on
    from the weights being trained (kept in the trainer state), not from the average in the
    checkpoint's model file."""
    averaged, switched = tmp_path / "averaged", tmp_path / "switched"
    _fit(toy.labelled(tmp_path, data, reg, epochs=2, ema=0.9), averaged, reg)
    _fit(toy.labelled(tmp_path, data, reg, epochs=1, ema=0.9), switched, reg)
    _fit(toy.labelled(tmp_path, data, reg, epochs=2), switched, reg, resume=True)
    trained = load_file(str(averaged / "checkpoints/epoch-0002/trainer_state.safetensors"))
    plain = load_file(str(switched / "checkpoints/epoch-0002/model.safetensors"))
    prefix = "state/training_weights/"
    assert {k[len(prefix):] for k in trained if k.startswith(prefix)} == set(plain)
    assert all(torch.equal(trained[prefix + k], v) for k, v in plain.items())


def test_a_run_shorter_than_the_averages_horizon_is_told(tmp_path, data, reg, capsys):
    """5 optimizer steps against a horizon of about 10 (decay 0.9): the note says so; a
    decay of 0.2 (about 1 step) passes without one."""
    for decay in (0.9, 0.2):
        Trainer(toy.labelled(tmp_path, data, reg, epochs=1, ema=decay),
                output=tmp_path / str(decay), registry=reg, plots=False, report=False,
                progress=False).fit()
    notes = [line for line in capsys.readouterr().err.splitlines() if "train.ema=" in line]
    assert notes == ["train.ema=0.9 averages over about 10 optimizer steps, and this run has "
                     "5: its first weights weigh on the average (a smaller decay, or more "
                     "epochs)"]


FSDP_SCRIPT = """
import os, torch, torch.distributed as dist
from torch import nn
dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)  # no port
from torch.distributed.fsdp import fully_shard
from mmcore.distributed.fsdp import _full
from mmcore.train.weight_average import WeightAverage
model = nn.Linear(3, 2)
model.register_buffer("mean", torch.zeros(2))  # a float buffer stays a plain tensor
fully_shard(model)
average = WeightAverage(0.5)
average.update(model)
with torch.no_grad():
    model.weight.add_(2.0)
    model.mean.fill_(4.0)
average.update(model)  # sharded parameters and plain buffers averaged together
gathered = {k: _full(v) for k, v in model.state_dict().items()}
with average.applied(model):
    averaged = {k: _full(v) for k, v in model.state_dict().items()}
assert torch.equal(averaged["mean"], torch.full((2,), 2.0)), averaged["mean"]
assert torch.equal(gathered["mean"], torch.full((2,), 4.0)), gathered["mean"]
assert torch.allclose(averaged["weight"], gathered["weight"] - 1.0)
dist.destroy_process_group()
print("ok")
"""


def test_the_average_of_a_sharded_model_holds_its_buffers_too(tmp_path):
    """Under FSDP the parameters are sharded (DTensor) and float buffers are not: both are
    averaged, and the gathered state of the average is not the live buffers'."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", FSDP_SCRIPT], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_auto_averages_small_data_in_runs_long_enough():
    assert resolve_ema("auto", rows=36, steps=300) == 0.99
    assert resolve_ema("auto", rows=2_000, steps=10_000) == 0.99
    assert resolve_ema("auto", rows=36, steps=299) is None  # fewer than three horizons
    assert resolve_ema("auto", rows=2_001, steps=10_000) is None  # not small data
    assert resolve_ema(0.9, rows=10**6, steps=1) == 0.9  # a number is the user's
    assert resolve_ema(None, rows=36, steps=10_000) is None
    # a schedule that anneals the learning rate already settles the weights: not measured
    assert resolve_ema("auto", rows=36, steps=10_000, scheduler="cosine") is None


@pytest.mark.parametrize("value", [0, 1, 1.5, -0.1, True, "often"])
def test_a_decay_outside_zero_to_one_is_refused_naming_the_field(tmp_path, data, reg, value):
    with pytest.raises(SpecError, match=r"train\.ema.*decay between 0 and 1"):
        toy.labelled(tmp_path, data, reg, ema=value)


def test_the_command_line_turns_the_average_off_or_sets_it(tmp_path, data, reg):
    spec = toy.spec_dict(data, tmp_path / "cache")
    for override, expected in (("train.ema=none", None), ("train.ema=null", None),
                               ("train.ema=0.95", 0.95), ("train.ema=auto", "auto")):
        trainer = Trainer(validate_spec(spec, registry=reg), output=tmp_path / "r",
                          registry=reg, overrides=[override])
        assert trainer.spec.train.ema == expected, override


def test_the_default_averages_a_small_run_of_auto_epochs(tmp_path, data, reg, capsys):
    """36 training rows in batches of 8: ``epochs: "auto"`` gives 60 epochs of 5 steps, and
    ``ema: "auto"`` (the default) an average that the run keeps."""
    spec = toy.spec_dict(data, tmp_path / "cache", epochs="auto")
    spec["train"].pop("ema", None)
    trainer = Trainer(validate_spec(spec, registry=reg), output=tmp_path / "run", registry=reg,
                      plots=False, report=False, progress=False)
    trainer.fit()
    assert trainer.epochs == 60 and trainer.average.decay == 0.99
    assert "train.ema='auto': validating and keeping an average" in capsys.readouterr().err
    state = json.loads((tmp_path / "run/checkpoints/epoch-0060/trainer_state.json").read_text())
    assert "training_weights" in state["state"]
