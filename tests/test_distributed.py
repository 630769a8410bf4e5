"""Distributed data-parallel training on 2 CPU processes with gloo: a 2-process run ends with
the weights of a single-process run with the same global batch, evaluates and predicts as one
process does, resumes on 1 process, and a rank that fails, or a launcher killed, stops the
whole run (unfreezing, FSDP and resuming inside an epoch: test_distributed_fsdp.py; the pieces
that need no processes: test_distributed_units.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from safetensors.torch import load_file

import mmcore
from mmcore.run import checkpoint as ck
from mmcore.train import Trainer
from tests import train_toy as toy
from tests.distributed_toy import (
    RUN_TIMEOUT,
    Launch,
    assert_close,
    history,
    make_world,
    single_process_one_thread,
    stop_all,
    weights,
)

CRASH_ENV = "MMCORE_TEST_CRASH_RANK"

CRASH_SPEC = '''
import os

import torch

import mmcore


class CrashingFusion(mmcore.Fusion):
    """Concatenation; its second training forward raises on the rank CRASH_ENV names."""

    def __init__(self, input_sizes, size: int = 8):
        super().__init__(input_sizes, output_size=size)
        self.proj = torch.nn.Linear(sum(input_sizes.values()), size)
        self.calls = 0

    def forward(self, features):
        if self.training and os.environ.get("RANK") == os.environ.get(CRASH_ENV):
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError(f"injected failure on rank {os.environ['RANK']}")
        return self.proj(torch.cat([features[m].pooled() for m in self.modalities], -1))


spec = SPEC
spec["fusion"] = {"name": CrashingFusion, "options": {}}
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
    """Both 2-process runs, started together (their start-up, mostly imports, overlaps):
    ``mmcore train --nproc 2`` for 2 epochs, and one whose rank 1 fails in training."""
    crash_spec = world.root / "crash_spec.py"
    crash_spec.write_text(
        CRASH_SPEC.replace("CRASH_ENV", repr(CRASH_ENV)).replace("SPEC", repr(world.spec))
    )
    runs = SimpleNamespace(ok=world.root / "run2", crashed=world.root / "crashed")
    started = {
        "ok": Launch(["train", str(world.spec_file), "--output", str(runs.ok), "--nproc", "2",
                      "--quiet"], world.env, world.root),
        "crashed": Launch(["train", str(crash_spec), "--output", str(runs.crashed), "--nproc",
                           "2", "--quiet"], {**world.env, CRASH_ENV: "1"}, world.root),
    }
    yield runs, started
    stop_all(started)


@pytest.fixture(scope="module")
def two_process_run(launches):
    runs, started = launches
    code, stdout, stderr, _ = started["ok"].wait()
    assert code == 0, stderr
    return SimpleNamespace(path=runs.ok, stdout=stdout, stderr=stderr)


@pytest.fixture(scope="module")
def one_process_run(world, launches):
    """The same spec in this process, for 3 epochs (its epoch 2 is the 2-epoch run's);
    trained while the launches run."""
    run = world.root / "run1"
    Trainer(world.spec_file, output=run, overrides=["train.epochs=3"], registry=toy.registry(),
            plots=False, report=False, quiet=True).fit()
    return run


def test_two_processes_end_where_one_process_does(one_process_run, two_process_run):
    run = two_process_run.path
    # rank 0 alone reports; rank 1 prints nothing
    assert two_process_run.stdout.count("run saved to") == 1
    assert_close(weights(run, 2), weights(one_process_run, 2))
    # losses and validation metrics are over the whole split, like one process's
    two, one = history(run), history(one_process_run)[:2]
    assert [r["epoch"] for r in two] == [1, 2]
    for a, b in zip(two, one, strict=True):
        for key in ("train/loss", "validation/loss", "validation/label.accuracy"):
            assert a[key] == pytest.approx(b[key], abs=1e-5), key
    state = json.loads((run / ck.CHECKPOINTS / "epoch-0002" / ck.STATE_JSON).read_text())
    assert state["state"]["world_size"] == 2
    final = json.loads((run / "metrics.json").read_text())
    assert final["epochs"] == 2 and "test" in final

    predictor = mmcore.load(run, registry=toy.registry())
    assert_close({k: v.cpu() for k, v in predictor.model.state_dict().items()},
                 load_file(str(run / ck.MODEL_FILE)))
    # the 2 ranks' test figures, padding dropped, are those of one process on the 11 rows
    result = predictor.evaluate()
    assert result["split"] == "test" and result["rows"] == 11
    assert result["metrics"].keys() == final["test"].keys()
    for key, value in final["test"].items():
        assert result["metrics"][key] == pytest.approx(value, abs=1e-6), key


def test_evaluate_on_two_processes_gives_one_process_figures(world, two_process_run):
    """``mmcore evaluate --nproc 2``: each rank evaluates its shard (one row repeated to pad
    them), the figures and the modality report cover the whole split, rank 0 prints them."""
    run = two_process_run.path
    done = subprocess.run(
        [sys.executable, "-m", "mmcore", "evaluate", str(run), "--nproc", "2", "--json",
         "--per-class"], env=world.env, cwd=world.root, text=True, capture_output=True,
        timeout=RUN_TIMEOUT)
    assert done.returncode == 0, done.stderr
    two = json.loads(done.stdout)  # printed once, by rank 0
    predictor = mmcore.load(run, registry=toy.registry())
    one = predictor.evaluate()
    assert two["split"] == "test" and two["rows"] == one["rows"] == 11
    assert two["metrics"].keys() == one["metrics"].keys()
    for key, value in one["metrics"].items():
        assert two["metrics"][key] == pytest.approx(value, abs=1e-6), key
    assert _leaves(two["per_class"]) == pytest.approx(_leaves(one["per_class"]))
    report = predictor.modality_report(save=False)
    assert _leaves(two["modality_report"]) == pytest.approx(_leaves(report))


def test_predict_on_two_processes_gives_one_process_predictions(world, two_process_run):
    """``mmcore predict --nproc 2``: each rank predicts its share of the rows, rank 0 writes
    them all, in input order; a bad row is named by its place in the whole input."""
    run, rows = two_process_run.path, world.root / "rows.jsonl"
    inputs = [{"x": float(i), "z": i / 10} for i in range(7)]
    rows.write_text("".join(json.dumps(r) + "\n" for r in inputs))
    out = world.root / "predictions.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "mmcore", "predict", str(run), "--input", str(rows),
         "--output", str(out), "--nproc", "2", "--batch-size", "2"], env=world.env,
        cwd=world.root, text=True, capture_output=True, timeout=RUN_TIMEOUT)
    assert done.returncode == 0, done.stderr
    two = [json.loads(line) for line in out.read_text().splitlines()]
    one = mmcore.load(run, registry=toy.registry()).predict(inputs)
    assert len(two) == 7 and [p["label"]["label"] for p in two] == [
        p["label"]["label"] for p in one]
    for a, b in zip(two, one, strict=True):
        assert _leaves(a) == pytest.approx(_leaves(json.loads(json.dumps(b))))
    bad = world.root / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in [*inputs, {"x": 1.0, "z": None}]))
    done = subprocess.run(
        [sys.executable, "-m", "mmcore", "predict", str(run), "--input", str(bad), "--nproc",
         "2"], env=world.env, cwd=world.root, text=True, capture_output=True,
        timeout=RUN_TIMEOUT)
    assert done.returncode == 2 and "row 7" in done.stderr and "'z'" in done.stderr, done.stderr


def _leaves(tree, path=""):
    """A nested JSON value as {path: leaf}, for comparing floats approximately."""
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in _leaves(sub, f"{path}/{key}").items()}
    if isinstance(tree, list):
        return {k: v for i, sub in enumerate(tree) for k, v in _leaves(sub, f"{path}/{i}").items()}
    return {path: tree}


def test_a_two_process_run_resumes_on_one_process(world, one_process_run, two_process_run):
    run = world.root / "resumed"
    shutil.copytree(two_process_run.path, run)
    trainer = Trainer(world.spec_file, output=run, resume=True, overrides=["train.epochs=3"],
                      registry=toy.registry(), plots=False, report=False, quiet=True)
    final = trainer.fit()
    assert final["epochs"] == 3 and [r["epoch"] for r in trainer.history] == [1, 2, 3]
    assert_close(weights(run, 3), weights(one_process_run, 3))


def test_a_failing_rank_stops_the_run_with_its_reason(launches):
    runs, started = launches
    # rank 0 is waiting for rank 1's gradients when rank 1 fails: the run must still end
    # (Launch.wait fails the test after RUN_TIMEOUT seconds)
    code, _, stderr, _ = started["crashed"].wait()
    assert code == 2, stderr
    assert "error: mmcore train on 2 processes failed:" in stderr
    first = stderr.split("failed:\n", 1)[1].splitlines()[0]
    assert first.startswith("rank 1 failed: RuntimeError: injected failure on rank 1"), first
    # it failed in training: after the set-up, before the first checkpoint
    assert (runs.crashed / "spec.json").is_file()
    assert not (runs.crashed / ck.CHECKPOINTS / "epoch-0001").exists()
    assert not (runs.crashed / "metrics.json").exists()


def _children(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting to be reaped)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_sigkilled_launcher_takes_its_ranks_with_it(world, tmp_path):
    run = tmp_path / "run"
    env = {**world.env, toy.DELAY_ENV: "0.3"}  # batches slow enough to kill mid-run
    with open(tmp_path / "launcher.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mmcore", "train", str(world.spec_file), "--output", str(run),
             "--nproc", "2", "--quiet", "train.epochs=30"],
            env=env, cwd=world.root, stdout=log, stderr=subprocess.STDOUT,
        )
    ranks: list[int] = []
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while not (run / "metrics.jsonl").exists():  # both ranks are training
            assert proc.poll() is None, (tmp_path / "launcher.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no epoch finished in time"
            time.sleep(0.2)
        ranks = _children(proc.pid)
        assert len(ranks) == 2 and all(map(_alive, ranks))
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 10
        while any(map(_alive, ranks)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(map(_alive, ranks)), "the ranks outlived their launcher"
    finally:
        proc.kill()
        proc.wait()
        for pid in ranks:  # a failed test leaves nothing running
            if _alive(pid):
                os.kill(pid, 9)
