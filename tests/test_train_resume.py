"""Interrupted runs: killed (SIGKILL) between or inside epochs, or stopped inside one, a run
resumes from its newest checkpoint and ends exactly where an uninterrupted run ends; a step
checkpoint from another number of processes is refused."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import mmcore
from mmcore.errors import CheckpointError
from mmcore.run import checkpoint as ck
from mmcore.spec import validate_spec
from mmcore.train import Trainer
from tests import train_toy as toy

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


def _lines(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


def _slow_training_env(tmp_path, delay: float) -> dict[str, str]:
    """The environment of a ``python -m mmcore train`` subprocess with the toy plugins
    installed, each training batch slowed by ``delay`` seconds (time to kill it mid-run)."""
    site = toy.install_entry_point(tmp_path / "site")
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(site)]),
        "MMCORE_PLUGINS": toy.PLUGIN,
        toy.DELAY_ENV: str(delay),
        "OMP_NUM_THREADS": "1",
        "HF_DATASETS_OFFLINE": "1",
    }


def _train_then_kill(spec_file: Path, run: Path, env: dict[str, str],
                     ready: Callable[[], bool], late: str) -> None:
    """``mmcore train spec_file --output run`` in a subprocess, killed with SIGKILL as soon as
    ``ready()``; fails if it exits first, or with ``late`` after 180 s."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmcore", "train", str(spec_file), "--output", str(run),
         "--quiet"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not ready():
            if proc.poll() is not None:
                pytest.fail(f"training exited early ({proc.returncode}): {proc.stderr.read()}")
            assert time.monotonic() < deadline, late
            time.sleep(0.01)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path, data, reg):
    spec = toy.spec_dict(data, tmp_path / "cache", epochs=4, deterministic=True,
                         modality_dropout=0.3, scheduler="cosine", warmup_steps=3)
    spec["fusion"]["options"]["dropout"] = 0.2  # exercises the restored torch RNG too
    spec_file = toy.write_spec(tmp_path / "spec.py", spec)

    Trainer(spec_file, output=tmp_path / "full", registry=reg, plots=False, quiet=True).fit()

    env = _slow_training_env(tmp_path, delay=0.1)  # 5 batches an epoch: ~0.5 s each
    steps = tmp_path / "steps"  # a byte per training batch begun
    env[toy.MARK_ENV] = str(steps)
    run = tmp_path / "killed"
    # the third batch of epoch 2 begun: epoch 1 written, epoch 2 half trained
    _train_then_kill(spec_file, run, env, lambda: steps.exists() and steps.stat().st_size >= 8,
                     "training did not reach epoch 2 in time")
    assert _lines(run / "metrics.jsonl") == 1
    assert not (run / "metrics.json").exists() and _lines(run / "metrics.jsonl") < 4
    resumed_from = ck.latest_checkpoint(run / "checkpoints")
    assert resumed_from is not None and resumed_from.name < "epoch-0004"

    trainer = Trainer(spec_file, output=run, resume=True, registry=reg, plots=False, quiet=True)
    final = trainer.fit()
    assert final["epochs"] == 4 and [r["epoch"] for r in trainer.history] == [1, 2, 3, 4]
    for name in ("checkpoints/epoch-0004/model.safetensors", "model.safetensors"):
        full, resumed = toy.weights(tmp_path / "full" / name), toy.weights(run / name)
        assert toy.same_tensors(full, resumed), name
    full_state = ck.read_checkpoint(tmp_path / "full/checkpoints/epoch-0004").state
    assert full_state["history"][-1]["train/loss"] == trainer.history[-1]["train/loss"]


def test_sigkill_inside_an_epoch_resumes_from_its_step_checkpoint_bitwise(tmp_path, data, reg):
    """train.checkpoint_every: killed in the middle of epoch 2, the run goes on from the
    step checkpoint (sampler position, generators, RNGs, loss sums) and ends bit for bit
    where an uninterrupted run does."""
    spec = toy.spec_dict(data, tmp_path / "cache", epochs=3, deterministic=True,
                         modality_dropout=0.3, scheduler="cosine", warmup_steps=2,
                         accumulate=2, checkpoint_every=1)
    spec["fusion"]["options"]["dropout"] = 0.2  # draws from torch's global generator
    spec_file = toy.write_spec(tmp_path / "spec.py", spec)
    Trainer(spec_file, output=tmp_path / "full", registry=reg, plots=False, quiet=True).fit()

    # 5 batches an epoch, windows of 2: steps after batches 2, 4 and 5
    env = _slow_training_env(tmp_path, delay=0.3)
    run = tmp_path / "killed"
    inside = run / "checkpoints" / ck.checkpoint_name(2, batch=2)
    # until checkpoints/latest names it: the folder is renamed into place first, and a
    # kill between the two resumes (correctly) from the checkpoint before
    _train_then_kill(spec_file, run, env,
                     lambda: ck.latest_checkpoint(run / "checkpoints") == inside,
                     "no step checkpoint in epoch 2 in time")
    resumed_from = ck.latest_checkpoint(run / "checkpoints")
    assert resumed_from is not None and resumed_from.name.startswith("epoch-0002-batch-")
    assert _lines(run / "metrics.jsonl") == 1  # epoch 2 had not ended

    trainer = Trainer(spec_file, output=run, resume=True, registry=reg, plots=False, quiet=True)
    final = trainer.fit()
    assert final["epochs"] == 3 and [r["epoch"] for r in trainer.history] == [1, 2, 3]
    for name in ("checkpoints/epoch-0003/model.safetensors", "model.safetensors"):
        full, resumed = toy.weights(tmp_path / "full" / name), toy.weights(run / name)
        assert toy.same_tensors(full, resumed), name
    full = ck.read_checkpoint(tmp_path / "full/checkpoints/epoch-0003").state
    again = ck.read_checkpoint(run / "checkpoints/epoch-0003").state
    for key in ("train/loss", "train/label.loss", "validation/loss"):
        assert [r[key] for r in full["history"]] == [r[key] for r in again["history"]], key
    assert full["step"] == again["step"] == 9
    # step checkpoints do not pile up: the newest epoch ends are kept, none from inside them
    assert [p.name for p in ck.complete_checkpoints(run / "checkpoints")] == [
        "epoch-0002", "epoch-0003"]


class Stop(Exception):
    pass


class StopAt:
    """A callback that ends training (an exception) once the named checkpoint is written."""

    def __init__(self, name: str) -> None:
        self.name = name

    @mmcore.hookimpl
    def on_checkpoint_saved(self, trainer, path):
        if path.name == self.name:
            raise Stop(path)


@pytest.mark.parametrize("streaming", [False, True], ids=["table", "stream"])
def test_a_run_stopped_inside_an_epoch_goes_on_from_its_step_checkpoint(
        tmp_path, data, reg, streaming):
    spec = toy.validated(tmp_path, data, reg, epochs=2, deterministic=True, modality_dropout=0.3,
                         checkpoint_every=2)
    spec.data.streaming = streaming
    toy.fit(spec, tmp_path / "full", reg)
    run = tmp_path / "stopped"
    with pytest.raises(Stop):
        toy.fit(spec, run, reg, callbacks=[StopAt(ck.checkpoint_name(2, batch=3))])
    assert ck.latest_checkpoint(run / "checkpoints").name == "epoch-0002-batch-000003"
    trainer, final = toy.fit(spec, run, reg, resume=True)
    assert final["epochs"] == 2
    assert toy.same_tensors(toy.weights(tmp_path / "full/model.safetensors"),
                  toy.weights(run / "model.safetensors"))
    full = ck.read_checkpoint(tmp_path / "full/checkpoints/epoch-0002").state["history"]
    assert [r["train/loss"] for r in full] == [r["train/loss"] for r in trainer.history]
    # the position in the epoch depends on these: changing one is refused, with the way out
    run2 = tmp_path / "stopped_again"
    with pytest.raises(Stop):
        toy.fit(spec, run2, reg, callbacks=[StopAt(ck.checkpoint_name(2, batch=3))])
    bigger = validate_spec(spec, overrides=["train.batch_size=16"], registry=reg)
    with pytest.raises(CheckpointError, match=r"train.batch_size=8 \(now 16\).*delete "
                       r"epoch-0002-batch-000003"):
        toy.fit(bigger, run2, reg, resume=True)


def test_a_step_checkpoint_from_another_number_of_processes_is_refused(tmp_path, data, reg):
    spec = toy.validated(tmp_path, data, reg, epochs=2, checkpoint_every=1)
    run = tmp_path / "run"
    trainer, _ = toy.fit(spec, run, reg)
    # a step checkpoint as two processes would have written it: one state per rank
    found = ck.read_checkpoint(run / "checkpoints" / "epoch-0002")
    state = dict(found.state, epoch=1)
    part = {"sums": torch.zeros(2), "rows": 8, "dropout_rng": torch.Generator().get_state(),
            "augment_rng": torch.Generator().get_state(), "rng": found.state["rng"]}
    state["partial"] = {"batch": 2, "ranks": [part, part]}
    ck.write_checkpoint(run / "checkpoints", 2, found.model, state, batch=2)
    shutil.rmtree(run / "checkpoints" / "epoch-0002")
    with pytest.raises(CheckpointError, match=r"inside epoch 2 by 2 process.*resume on 2"):
        toy.fit(spec, run, reg, resume=True)
