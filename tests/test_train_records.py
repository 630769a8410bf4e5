"""The run folder's records after each epoch (mmcore.train.records) and the one-line report
of a refused write (mmcore.train.refused_writes), without training."""

from __future__ import annotations

import errno
import json

import pytest
import torch

from mmcore.errors import CheckpointError
from mmcore.run import checkpoint as ck
from mmcore.run.layout import RunFolder
from mmcore.train.records import record_epoch
from mmcore.train.refused_writes import refused_writes_reported


def _checkpoints(run: RunFolder, epochs: int) -> list:
    tensors = {"w": torch.zeros(2)}
    return [ck.write_checkpoint(run.checkpoints, e, tensors, {"epoch": e})
            for e in range(1, epochs + 1)]


def test_an_epoch_record_publishes_the_best_prunes_and_writes_the_history(tmp_path):
    run = RunFolder(tmp_path / "run")
    paths = _checkpoints(run, 3)
    history = [{"epoch": e, "train/loss": 1.0 / e} for e in (1, 2, 3)]
    record_epoch(run, paths[2], history, {"epoch": 3, "checkpoint": paths[2].name})
    kept = [p.name for p in ck.complete_checkpoints(run.checkpoints)]
    assert kept == [p.name for p in paths[-ck.KEEP_LAST:]]
    assert json.loads((run.best / ck.BEST_INFO).read_text())["epoch"] == 3
    assert run.model.read_bytes() == (paths[2] / ck.MODEL_FILE).read_bytes()
    lines = run.metrics_jsonl.read_text().splitlines()
    assert [json.loads(line) for line in lines] == history
    run.model.unlink()
    record_epoch(run, paths[2], history, None)  # not the best: nothing published
    assert not run.model.exists()


def test_a_refused_write_is_one_line_naming_the_file(tmp_path):
    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "metrics.jsonl"))
    with pytest.raises(CheckpointError, match=r"metrics.jsonl: No space left on device "
                                              r"\[ENOSPC\].*--resume once fixed"):
        with refused_writes_reported(tmp_path):
            raise full
    with pytest.raises(FileNotFoundError):  # not a refused write: unchanged
        with refused_writes_reported(tmp_path):
            raise FileNotFoundError(errno.ENOENT, "gone")
