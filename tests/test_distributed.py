"""Distributed data-parallel training on 2 CPU processes with gloo: a 2-process run ends with
the weights of a single-process run with the same global batch, resumes on 1 process, and a
rank that fails stops the whole run with its reason (the pieces that need no processes:
test_distributed_units.py)."""

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
import torch
from safetensors.torch import load_file

import mmcore
from mmcore.run import checkpoint as ck
from mmcore.train import Trainer
from tests import train_toy as toy

REPO = Path(__file__).resolve().parents[1]
#: seconds a subprocess run may take before the test fails (a hang must not stall the suite)
RUN_TIMEOUT = 150
DIST_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
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
    # The subprocesses run with OMP_NUM_THREADS=1; the in-process reference run does too.
    for var in DIST_VARS:
        monkeypatch.delenv(var, raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Data, spec file, plugin. 36 train rows: 18 per rank in batches of 4 (the global 8);
    11 test rows: 6 per rank, one of them repeated to pad the shards."""
    root = tmp_path_factory.mktemp("dist")
    data = toy.write_data(root / "data" / "data.csv", rows=59)
    # deterministic, no dropout of any kind: the two runs differ only in how a batch's
    # gradient is summed
    spec = toy.spec_dict(root / "data" / "data.csv", root / "cache", epochs=2, batch_size=8,
                         deterministic=True)
    spec_file = toy.write_spec(root / "spec.py", spec)
    site = toy.install_entry_point(root / "site")
    env = {k: v for k, v in os.environ.items() if k not in DIST_VARS}
    env.update({
        "PYTHONPATH": os.pathsep.join([str(REPO), str(site)]),
        "MMCORE_PLUGINS": toy.PLUGIN,
        "OMP_NUM_THREADS": "1",
        "HF_DATASETS_OFFLINE": "1",
        "MMCORE_DIST_TIMEOUT": "60",
    })
    return SimpleNamespace(root=root, data=data, spec=spec, spec_file=spec_file, env=env)


class Launch:
    """``python -m mmcore ARGS`` started now, finished by :meth:`wait`."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mmcore", *args], env=env, cwd=cwd, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.result: tuple[int, str, str, float] | None = None

    def wait(self) -> tuple[int, str, str, float]:
        """(exit code, stdout, stderr, seconds); kills the run when it exceeds RUN_TIMEOUT."""
        if self.result is None:
            left = RUN_TIMEOUT - (time.monotonic() - self.started)
            try:
                out, err = self.proc.communicate(timeout=max(left, 1))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                out, err = self.proc.communicate()
                pytest.fail(f"no result after {RUN_TIMEOUT}s (a hang?):\n{err[-3000:]}")
            seconds = time.monotonic() - self.started
            self.result = (self.proc.returncode, out, err, seconds)
        return self.result


@pytest.fixture(scope="module")
def launches(world):
    """Both 2-process runs, started together (their start-up, mostly imports, overlaps):
    ``mmcore train --nproc 2`` for 2 epochs, and one whose rank 1 fails in training."""
    crash_spec = world.root / "crash_spec.py"
    crash_spec.write_text(
        CRASH_SPEC.replace("CRASH_ENV", repr(CRASH_ENV)).replace("SPEC", repr(world.spec))
    )
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
    runs = SimpleNamespace(ok=world.root / "run2", crashed=world.root / "crashed",
                           thaw=world.root / "thaw2", thaw_spec=thaw_spec,
                           fsdp=world.root / "fsdp2", stop_spec=stop_spec,
                           stopped=world.root / "stopped2", unstopped=world.root / "unstopped2")
    started = {
        "thaw": Launch(["train", str(thaw_spec), "--output", str(runs.thaw), "--nproc", "2",
                        "--quiet"], world.env, world.root),
        "ok": Launch(["train", str(world.spec_file), "--output", str(runs.ok), "--nproc", "2",
                      "--quiet"], world.env, world.root),
        # sharded, through an unfreeze (the thaw spec), with mid-epoch checkpoints
        "fsdp": Launch(["train", str(thaw_spec), "--output", str(runs.fsdp), "--nproc", "2",
                        "--quiet", "train.strategy=fsdp", "train.checkpoint_every=2"],
                       world.env, world.root),
        "crashed": Launch(["train", str(crash_spec), "--output", str(runs.crashed), "--nproc",
                           "2", "--quiet"], {**world.env, CRASH_ENV: "1"}, world.root),
        # 5 batches (steps) an epoch per rank, a step checkpoint every 2nd step: stopped in
        # epoch 2's 4th batch (step 9), after the checkpoint of its first 3 (step 8)
        "stopped": Launch(["train", str(stop_spec), "--output", str(runs.stopped), "--nproc",
                           "2", "--quiet"], {**world.env, STOP_ENV: "9"}, world.root),
        "unstopped": Launch(["train", str(stop_spec), "--output", str(runs.unstopped),
                             "--nproc", "2", "--quiet"], world.env, world.root),
    }
    yield runs, started
    for launch_ in started.values():  # a test that failed early leaves nothing running
        if launch_.proc.poll() is None:
            launch_.proc.kill()
            launch_.proc.communicate()


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


def _weights(run: Path, epoch: int) -> dict[str, torch.Tensor]:
    return load_file(str(run / ck.CHECKPOINTS / ck.checkpoint_name(epoch) / ck.MODEL_FILE))


def _assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=0, msg=key)


def _history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_end_where_one_process_does(one_process_run, two_process_run):
    run = two_process_run.path
    # rank 0 alone reports; rank 1 prints nothing
    assert two_process_run.stdout.count("run saved to") == 1
    _assert_close(_weights(run, 2), _weights(one_process_run, 2))
    # losses and validation metrics are over the whole split, like one process's
    two, one = _history(run), _history(one_process_run)[:2]
    assert [r["epoch"] for r in two] == [1, 2]
    for a, b in zip(two, one, strict=True):
        for key in ("train/loss", "validation/loss", "validation/label.accuracy"):
            assert a[key] == pytest.approx(b[key], abs=1e-5), key
    state = json.loads((run / ck.CHECKPOINTS / "epoch-0002" / ck.STATE_JSON).read_text())
    assert state["state"]["world_size"] == 2
    final = json.loads((run / "metrics.json").read_text())
    assert final["epochs"] == 2 and "test" in final

    predictor = mmcore.load(run, registry=toy.registry())
    _assert_close({k: v.cpu() for k, v in predictor.model.state_dict().items()},
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
    _assert_close(_weights(run, 3), _weights(one_process_run, 3))


def test_an_encoder_unfrozen_mid_run_trains_in_step_on_two_processes(
        world, launches, thaw_one_process):
    runs, started = launches
    code, _, stderr, _ = started["thaw"].wait()
    assert code == 0, stderr
    one = thaw_one_process
    first, second = _weights(runs.thaw, 1), _weights(runs.thaw, 2)
    encoder = [k for k in first if k.startswith("members.1.encoders.a.")]  # the 2nd member's
    assert encoder
    assert any(not torch.equal(first[k], second[k]) for k in encoder)  # trained in epoch 2
    # with DistributedDataParallel re-wrapped at the unfreeze, its gradients are averaged
    # over the ranks: the weights are one process's
    _assert_close(first, _weights(one, 1))
    _assert_close(second, _weights(one, 2))


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
        _assert_close(_weights(runs.fsdp, epoch), _weights(thaw_one_process, epoch))
    encoder = [k for k in _weights(runs.fsdp, 1) if k.startswith("members.1.encoders.a.")]
    assert encoder
    assert any(not torch.equal(_weights(runs.fsdp, 1)[k], _weights(runs.fsdp, 2)[k])
               for k in encoder)  # frozen in epoch 1, trained in epoch 2
    two, one = _history(runs.fsdp), _history(thaw_one_process)[:2]
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
    _assert_close(_weights(world.root / "fsdp2_more", 3), _weights(world.root / "thaw1_more", 3))


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
    a, b = _weights(runs.stopped, 2), _weights(runs.unstopped, 2)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _history(runs.stopped) == [
        {**r, "seconds": s["seconds"]}
        for r, s in zip(_history(runs.unstopped), _history(runs.stopped), strict=True)]


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
