"""Shared pieces of the distributed tests that launch real processes (test_distributed.py,
test_distributed_fsdp.py): the world they train in, a launched ``mmcore`` run, and the
checkpoint weights and metric history they compare."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from mmcore.run import checkpoint as ck
from tests import train_toy as toy

REPO = Path(__file__).resolve().parents[1]
#: seconds a subprocess run may take before the test fails (a hang must not stall the suite)
RUN_TIMEOUT = 150
DIST_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def make_world(root: Path) -> SimpleNamespace:
    """Data, spec file, plugin in ``root``. 36 train rows: 18 per rank in batches of 4 (the
    global 8); 11 test rows: 6 per rank, one of them repeated to pad the shards."""
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


def stop_all(started: dict[str, Launch]) -> None:
    """Kill the launches still running (a test that failed early leaves nothing running)."""
    for launch_ in started.values():
        if launch_.proc.poll() is None:
            launch_.proc.kill()
            launch_.proc.communicate()


def weights(run: Path, epoch: int) -> dict[str, torch.Tensor]:
    return load_file(str(run / ck.CHECKPOINTS / ck.checkpoint_name(epoch) / ck.MODEL_FILE))


def assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=0, msg=key)


def history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@contextmanager
def single_process_one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No torchrun variables and one torch thread: the subprocesses run with
    OMP_NUM_THREADS=1, and the in-process reference run does too."""
    for var in DIST_VARS:
        monkeypatch.delenv(var, raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
