"""The pieces of distributed training that need no processes: torchrun's environment read,
the global batch size checked before any process group is joined, shards merged in split
order, failures reported per rank, ``--nproc`` refused inside a distributed run."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from mmcore.distributed.launch import DistEnv, describe_failures, detect, launch, record_failure
from mmcore.distributed.process_group import _merge_shards, local_batch_size
from mmcore.errors import SpecError, TrainingError
from mmcore.spec import validate_spec
from mmcore.train import Trainer
from tests import train_toy as toy

DIST_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(autouse=True)
def no_distributed_run(monkeypatch):
    for var in DIST_VARS:
        monkeypatch.delenv(var, raising=False)


def test_batch_size_is_global_and_must_divide_among_processes(tmp_path, monkeypatch):
    assert local_batch_size(32, 4) == 8
    with pytest.raises(SpecError, match=r"train\.batch_size.*divide evenly among the 4 proc"):
        local_batch_size(30, 4)
    # checked before any process group is joined
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    data = toy.write_data(tmp_path / "data.csv")
    spec = validate_spec(toy.spec_dict(data, tmp_path / "cache", batch_size=7),
                         registry=toy.registry())
    trainer = Trainer(spec, output=tmp_path / "run", registry=toy.registry(), quiet=True)
    assert (trainer.rank, trainer.world_size, trainer.is_main) == (0, 2, True)
    with pytest.raises(SpecError, match="7 is the global batch"):
        trainer.fit()
    assert not (tmp_path / "run").exists()


def test_detect_reads_torchruns_variables():
    assert detect({}) is None
    assert detect({"WORLD_SIZE": "1", "RANK": "0"}) is None
    assert detect({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}) == DistEnv(3, 4, 1)
    assert detect({"WORLD_SIZE": "2", "RANK": "1"}) == DistEnv(1, 2, 1)
    with pytest.raises(TrainingError, match="0 <= RANK < WORLD_SIZE"):
        detect({"WORLD_SIZE": "2"})
    with pytest.raises(TrainingError, match="expected integers"):
        detect({"WORLD_SIZE": "two", "RANK": "0"})


def test_merging_shards_drops_padding_and_restores_split_order():
    # 5 rows on 2 ranks: rank 0 took rows 0, 2, 4 and rank 1 rows 1, 3 and row 0 again
    def shard(rows):
        index = torch.tensor(rows)
        return ({"h": index.float()[:, None] * 10}, {"h": index}, index)

    outputs, targets, index = _merge_shards([shard([0, 2, 4]), shard([1, 3, 0])], dedupe=True)
    assert index.tolist() == [0, 1, 2, 3, 4]
    assert targets["h"].tolist() == [0, 1, 2, 3, 4]
    assert outputs["h"][:, 0].tolist() == [0, 10, 20, 30, 40]
    # streamed shards are disjoint and their indices are per-rank positions: all kept
    _, targets, index = _merge_shards([shard([0, 1]), shard([0])], dedupe=False)
    assert targets["h"].tolist() == [0, 1, 0] and len(index) == 3


def test_failures_are_reported_per_rank_first_failure_first():
    def failure(exitcode, message, file="err.json", at=0.0, timestamp=0):
        return SimpleNamespace(
            exitcode=exitcode, message=message, error_file=file, timestamp=timestamp,
            error_file_data={"message": message, "mmcore": {"time": at}},
            signal_name=lambda: "SIGTERM",
        )

    text = describe_failures({
        0: failure(1, "RuntimeError: Connection closed by peer", at=12.5),
        1: failure(2, "DataError: bad row 3", at=12.0),
        2: failure(-15, "Signal 15 (SIGTERM) received by PID 7", file="<N/A>", at=13.0),
        3: failure(1, "To enable traceback see: ...", file="<N/A>", at=14.0),
        4: failure(-15, "CheckpointError: run exists", at=11.0),
    })
    lines = text.splitlines()
    assert lines[0] == "rank 4 failed: CheckpointError: run exists (then stopped by signal SIGTERM)"
    assert lines[1] == "rank 1 failed: DataError: bad row 3 (exit code 2)"
    assert lines[2] == "rank 0 failed: RuntimeError: Connection closed by peer (exit code 1)"
    assert lines[3] == "rank 2 failed: killed by signal SIGTERM (exit code -15)"
    assert lines[4].startswith("rank 3 failed: exit code 1 without an error message")
    assert "first is usually the cause" in lines[5]


def test_a_rank_stopped_while_recording_its_failure_leaves_no_partial_error_file(
        tmp_path, monkeypatch):
    """torchrun stops the other ranks when one fails, then reads every failed rank's error
    file: a rank stopped half-way through writing its own must leave no file rather than a
    part of one (on an empty file torchrun's launcher crashed with a JSONDecodeError)."""
    path = tmp_path / "error.json"
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(path))

    class Stopped(BaseException):  # as the default SIGTERM handler, it skips except clauses
        pass

    def stopped_half_way(*args, **kwargs):
        raise Stopped

    for method in ("encode", "iterencode"):  # whichever way the document is written
        monkeypatch.setattr(json.JSONEncoder, method, stopped_half_way)
    with pytest.raises(Stopped):
        record_failure(RuntimeError("stopped on purpose"), DistEnv(1, 2, 1))
    assert list(tmp_path.iterdir()) == []

    monkeypatch.undo()
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(path))
    with monkeypatch.context() as m:  # stopped once the file is written, before it is named
        m.setattr("mmcore.run.atomic.os.replace", stopped_half_way)
        with pytest.raises(Stopped):
            record_failure(RuntimeError("stopped on purpose"), DistEnv(1, 2, 1))
    assert list(tmp_path.iterdir()) == []
    record_failure(RuntimeError("stopped on purpose"), DistEnv(1, 2, 1))
    doc = json.loads(path.read_text())
    assert doc["message"] == "RuntimeError: stopped on purpose" and doc["mmcore"]["rank"] == 1
    assert list(tmp_path.iterdir()) == [path]


def test_nproc_inside_a_distributed_run_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(TrainingError, match="already rank 1 of 2"):
        launch(2, ["train", "spec.py"])
