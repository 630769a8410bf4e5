"""The run folder's reliability: one writer at a time (the lock), a crashed run's folder may
be reused, and a full disk ends in one line and exit code 2."""

from __future__ import annotations

import builtins
import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmcore.cli import main
from mmcore.errors import CheckpointError
from mmcore.run import atomic
from mmcore.run import checkpoint as ck
from mmcore.run.lock import LOCK_FILE, RunLock
from tests import train_toy as toy

REPO = Path(__file__).resolve().parents[1]
HOLD = (
    "import sys, time\n"
    "from mmcore.run.lock import RunLock\n"
    "lock = RunLock(sys.argv[1]).acquire()\n"
    "print('locked', flush=True)\n"
    "time.sleep(120)\n"
)


@pytest.fixture(autouse=True)
def cli_registry():
    with toy.process_registry():
        yield


@pytest.fixture
def spec_file(tmp_path):
    data = toy.write_data(tmp_path / "data.csv")
    spec = toy.spec_dict(data, tmp_path / "cache", epochs=1, callbacks=[])
    return toy.write_spec(tmp_path / "spec.py", spec)


@pytest.fixture
def holder(tmp_path):
    """Starts a process that holds the lock of a folder, as a training would."""
    procs: list[subprocess.Popen] = []

    def start(folder: Path) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], env=env,
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def _train(spec_file, run, *flags):
    return main(["train", str(spec_file), "--output", str(run), "--quiet", *flags])


def test_a_second_writer_is_refused_while_a_training_holds_the_folder(
        spec_file, tmp_path, holder, capsys):
    run = tmp_path / "run"
    proc = holder(run)
    for flags in ((), ("--resume",), ("--overwrite",)):
        assert _train(spec_file, run, *flags) == 2
        err = capsys.readouterr().err
        assert "being written by another training" in err, flags
        assert f"pid {proc.pid} on " in err and "since " in err and "Traceback" not in err
    assert not (run / "spec.json").exists()  # nothing was written beside the holder
    proc.kill()
    proc.wait()
    # The dead holder's lock file stays behind; its flock went with the process.
    assert (run / LOCK_FILE).is_file()
    assert _train(spec_file, run) == 0
    with RunLock(run):  # released when the training returned
        pass


def test_the_lock_is_reentrant_free_after_release(tmp_path):
    with RunLock(tmp_path) as lock:
        with pytest.raises(CheckpointError, match=f"pid {os.getpid()} "):
            RunLock(tmp_path).acquire()
        lock.acquire()  # held already: nothing to do
    RunLock(tmp_path).acquire().release()


def test_a_run_that_crashed_before_its_first_checkpoint_may_be_rerun(
        spec_file, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"

    def crash(*args, **kwargs):
        raise RuntimeError("killed before the first checkpoint")

    with monkeypatch.context() as m:
        m.setattr(ck, "write_checkpoint", crash)
        with pytest.raises(RuntimeError, match="killed before"):
            _train(spec_file, run)
    assert (run / "spec.json").is_file() and ck.latest_checkpoint(run / "checkpoints") is None
    capsys.readouterr()
    assert main(["train", str(spec_file), "--output", str(run)]) == 0
    err = capsys.readouterr().err
    assert "stopped before its first complete checkpoint" in err
    # Now it holds a complete run: that needs --resume or --overwrite.
    assert _train(spec_file, run) == 2
    err = capsys.readouterr().err
    assert "already holds a run with a complete checkpoint" in err
    assert "--resume" in err and "--overwrite" in err


def test_a_full_disk_ends_in_one_line_and_exit_2(spec_file, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"

    def full_disk(file, mode="r", *args, **kwargs):
        if "w" in mode and Path(file).name.startswith(".metrics.jsonl."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
        return builtins.open(file, mode, *args, **kwargs)

    monkeypatch.setattr(atomic, "open", full_disk, raising=False)
    assert _train(spec_file, run) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"training stopped: {run / 'metrics.jsonl'}: No space left" in err and "[ENOSPC]" in err
    assert "--resume" in err
    assert not list(run.glob(".*.tmp")) and not (run / "metrics.jsonl").exists()
    with RunLock(run):  # the failed run let go of the folder
        pass
    with pytest.raises(CheckpointError, match="No space left"):  # --debug: the traceback
        main(["--debug", "train", str(spec_file), "--output", str(run), "--quiet",
              "--overwrite"])
