"""Distributed training state on 2 CPU processes with gloo, sharded or not: an ensemble with
an encoder unfrozen mid-run trains in step with one process (DDP re-wrapped at the unfreeze),
an FSDP run's checkpoints hold one process's model and optimizer state and resume on one
process, and a 2-process FSDP run resumed from a step checkpoint ends exactly where it would
have (the runs' other checks: test_distributed.py)."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest
import torch

from mmcore.run import checkpoint as ck
from mmcore.train import Trainer
from tests import train_toy as toy
from tests.distributed_toy import (
    Launch,
    assert_close,
    history,
    make_world,
    single_process_one_thread,
    stop_all,
    weights,
)

STOP_ENV = "MMCORE_TEST_STOP_AT"
STOP_SPEC = '''
import os

import torch

import mmcore


class StoppingFusion(mmcore.Fusion):
    """Concatenation; rank 0's training forward number STOP_ENV raises (when it is set).
    Only the fused forward counts, not train.modality_loss's (one modality kept)."""

    def __init__(self, input_sizes, size: int = 8):
        super().__init__(input_sizes, output_size=size)
        self.proj = torch.nn.Linear(sum(input_sizes.values()), size)
        self.calls = 0

    def forward(self, features):
        fused = all(bool(features[m].present.any()) for m in self.modalities)
        if self.training and fused and os.environ.get("RANK") == "0":
            self.calls += 1
            if str(self.calls) == os.environ.get(STOP_ENV):
                raise RuntimeError("stopped on purpose")
        return self.proj(torch.cat([features[m].pooled() for m in self.modalities], -1))


spec = SPEC
spec["fusion"] = {"name": StoppingFusion, "options": {}}
spec["train"]["checkpoint_every"] = 2
spec["train"]["strategy"] = "fsdp"  # the sharded optimizer state is gathered and re-sharded
'''


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    with single_process_one_thread(monkeypatch):
        yield


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Data, spec file, plugin (:func:`tests.distributed_toy.make_world`)."""
    return make_world(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def launches(world):
    """The 2-process runs, started together (their start-up, mostly imports, overlaps): an
    ensemble through an unfreeze with DDP and with FSDP, and an FSDP run stopped mid-epoch
    beside one that is not."""
    # an ensemble of 2 (train.ensemble): every member frozen, unfrozen, sharded and clipped;
    # its weights averaged (train.ema) on every process, sharded too with FSDP
    thaw = dict(world.spec, modalities={
        **world.spec["modalities"], "a": {**world.spec["modalities"]["a"], "freeze": True,
                                          "unfreeze_at": 2}},
        train={**world.spec["train"], "ensemble": 2, "ema": 0.9})
    thaw_spec = toy.write_spec(world.root / "thaw_spec.py", thaw)
    stop_spec = world.root / "stop_spec.py"
    stop_spec.write_text(
        STOP_SPEC.replace("STOP_ENV", repr(STOP_ENV)).replace("SPEC", repr(world.spec)))
    runs = SimpleNamespace(thaw=world.root / "thaw2", thaw_spec=thaw_spec,
                           fsdp=world.root / "fsdp2", stop_spec=stop_spec,
                           stopped=world.root / "stopped2", unstopped=world.root / "unstopped2")
    started = {
        "thaw": Launch(["train", str(thaw_spec), "--output", str(runs.thaw), "--nproc", "2",
                        "--quiet"], world.env, world.root),
        # sharded, through an unfreeze (the thaw spec), with mid-epoch checkpoints
        "fsdp": Launch(["train", str(thaw_spec), "--output", str(runs.fsdp), "--nproc", "2",
                        "--quiet", "train.strategy=fsdp", "train.checkpoint_every=2"],
                       world.env, world.root),
        # 5 batches (steps) an epoch per rank, a step checkpoint every 2nd step: stopped in
        # epoch 2's 4th batch (step 9), after the checkpoint of its first 3 (step 8)
        "stopped": Launch(["train", str(stop_spec), "--output", str(runs.stopped), "--nproc",
                           "2", "--quiet"], {**world.env, STOP_ENV: "9"}, world.root),
        "unstopped": Launch(["train", str(stop_spec), "--output", str(runs.unstopped),
                             "--nproc", "2", "--quiet"], world.env, world.root),
    }
    yield runs, started
    stop_all(started)


def test_an_encoder_unfrozen_mid_run_trains_in_step_on_two_processes(
        world, launches, thaw_one_process):
    runs, started = launches
    code, _, stderr, _ = started["thaw"].wait()
    assert code == 0, stderr
    one = thaw_one_process
    first, second = weights(runs.thaw, 1), weights(runs.thaw, 2)
    encoder = [k for k in first if k.startswith("members.1.encoders.a.")]  # the 2nd member's
    assert encoder
    assert any(not torch.equal(first[k], second[k]) for k in encoder)  # trained in epoch 2
    # with DistributedDataParallel re-wrapped at the unfreeze, its gradients are averaged
    # over the ranks: the weights are one process's
    assert_close(first, weights(one, 1))
    assert_close(second, weights(one, 2))


@pytest.fixture(scope="module")
def thaw_one_process(world, launches):
    """The thaw spec trained in this process, with the FSDP run's mid-epoch checkpoints."""
    runs, _ = launches
    one = world.root / "thaw1"
    Trainer(runs.thaw_spec, output=one, registry=toy.registry(), plots=False, report=False,
            quiet=True, overrides=["train.checkpoint_every=2"]).fit()
    return one


def test_fsdp_on_two_processes_ends_where_one_process_does(world, launches, thaw_one_process):
    runs, started = launches
    code, stdout, stderr, _ = started["fsdp"].wait()
    assert code == 0, stderr
    assert stdout.count("run saved to") == 1
    # the checkpoints hold the full model, gathered from the shards, in one process's layout
    for epoch in (1, 2):
        assert_close(weights(runs.fsdp, epoch), weights(thaw_one_process, epoch))
    encoder = [k for k in weights(runs.fsdp, 1) if k.startswith("members.1.encoders.a.")]
    assert encoder
    assert any(not torch.equal(weights(runs.fsdp, 1)[k], weights(runs.fsdp, 2)[k])
               for k in encoder)  # frozen in epoch 1, trained in epoch 2
    two, one = history(runs.fsdp), history(thaw_one_process)[:2]
    for a, b in zip(two, one, strict=True):
        for key in ("train/loss", "validation/loss", "validation/label.accuracy"):
            assert a[key] == pytest.approx(b[key], abs=1e-5), key
    state = ck.read_checkpoint(runs.fsdp / ck.CHECKPOINTS / "epoch-0002").state
    assert state["strategy"] == "fsdp" and state["world_size"] == 2
    single = ck.read_checkpoint(thaw_one_process / ck.CHECKPOINTS / "epoch-0002").state
    # the optimizer state is gathered into torch's own layout: the same as one process's
    assert state["optimizer"]["param_groups"] == single["optimizer"]["param_groups"]
    for index, values in single["optimizer"]["state"].items():
        for key, value in values.items():
            torch.testing.assert_close(state["optimizer"]["state"][index][key], value,
                                       atol=1e-5, rtol=0)
    final = json.loads((runs.fsdp / "metrics.json").read_text())
    assert final["epochs"] == 2 and "test" in final

    # an FSDP run's checkpoint resumes in one process, and goes on as one process's does
    for run in (runs.fsdp, thaw_one_process):
        shutil.copytree(run, world.root / f"{run.name}_more")
        Trainer(runs.thaw_spec, output=world.root / f"{run.name}_more", resume=True,
                registry=toy.registry(), overrides=["train.epochs=3"], plots=False,
                report=False, quiet=True).fit()
    assert_close(weights(world.root / "fsdp2_more", 3), weights(world.root / "thaw1_more", 3))


def test_two_processes_resume_inside_an_epoch_exactly(world, launches):
    """A step checkpoint holds each rank's share of the epoch (loss sums, generators, random
    states): the 2-process FSDP run resumed from one ends bit for bit where it would have."""
    runs, started = launches
    code, _, stderr, _ = started["stopped"].wait()
    assert code == 2 and "stopped on purpose" in stderr, stderr
    found = ck.latest_checkpoint(runs.stopped / ck.CHECKPOINTS)
    assert found is not None and found.name == ck.checkpoint_name(2, batch=3)
    assert len(ck.read_checkpoint(found).state["partial"]["ranks"]) == 2
    resumed = Launch(["train", str(runs.stop_spec), "--output", str(runs.stopped), "--nproc",
                      "2", "--quiet", "--resume"], world.env, world.root)
    code, _, stderr, _ = resumed.wait()
    assert code == 0, stderr
    code, _, stderr, _ = started["unstopped"].wait()
    assert code == 0, stderr
    a, b = weights(runs.stopped, 2), weights(runs.unstopped, 2)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert history(runs.stopped) == [
        {**r, "seconds": s["seconds"]}
        for r, s in zip(history(runs.unstopped), history(runs.stopped), strict=True)]
