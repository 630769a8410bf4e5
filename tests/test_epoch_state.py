"""The epoch in progress (mmcore.train.epoch_state.EpochProgress) on hand-made losses: sums,
means, the non-finite check, accumulation windows, and its step-checkpoint state, including
the exact shape the checkpoints on disk hold (so runs saved before it keep resuming)."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mmcore.errors import CheckpointError, TrainingError
from mmcore.run.state import capture_rng, flatten, unflatten
from mmcore.spec import TrainSpec
from mmcore.train.epoch_state import EpochProgress

CPU = torch.device("cpu")


def _spec(**train):
    return SimpleNamespace(train=TrainSpec(**train), data=SimpleNamespace(streaming=False))


def _begin(progress: EpochProgress, total: int = 5, accumulate: int = 1) -> EpochProgress:
    progress.begin(2, total=total, seed=7, heads=1, step=10, accumulate=accumulate, device=CPU)
    return progress


def _through_disk(obj):
    """``obj`` as a checkpoint's state.json + tensors give it back."""
    tensors: dict[str, torch.Tensor] = {}
    return unflatten(flatten(obj, "state", tensors), tensors)


def test_sums_are_row_weighted_and_means_name_the_heads():
    progress = _begin(EpochProgress())
    progress.add(torch.tensor([1.0, 2.0]), rows=2)
    progress.add(torch.tensor([4.0, 8.0]), rows=1)
    progress.flush(None)
    assert progress.batch == 2 and progress.rows == 3
    assert progress.sums.tolist() == [6.0, 12.0] and progress.running_loss() == 2.0
    doubled = progress.means(["label"], lambda sums, rows: (sums * 2, rows * 2))
    assert doubled == {"loss": 2.0, "label.loss": 4.0}


def test_flush_names_the_first_non_finite_batch_and_its_step():
    progress = _begin(EpochProgress(), total=9, accumulate=2)
    for loss in (1.0, 1.0, float("nan"), float("inf")):
        progress.add(torch.tensor([loss, loss]), rows=1)
    with pytest.raises(TrainingError, match=r"epoch 2, batch 3/9 \(optimizer step 12\).*"
                                            r"last good checkpoint is ck/epoch-0001"):
        progress.flush(Path("ck/epoch-0001"))
    with pytest.raises(TrainingError, match="batch 3/9"):  # it stays the first one
        progress.flush(None)


def test_windows_of_accumulation_end_on_the_last_batch():
    progress = _begin(EpochProgress(), total=5, accumulate=2)
    windows = []
    for _ in range(6):  # one batch past the count, as a longer stream shard would give
        windows.append(progress.window())
        progress.add(torch.zeros(2), rows=1)
    assert windows == [(False, 2), (True, 2), (False, 2), (True, 2), (True, 1), (True, 1)]


def test_a_step_checkpoint_resumes_the_epoch_where_it_was():
    spec = _spec(seed=3)
    written = _begin(EpochProgress())
    for _ in range(3):
        torch.rand(1, generator=written.dropout)
        torch.rand(1, generator=written.augment)
        written.add(torch.tensor([0.5, 0.25]), rows=4)
    written.flush(None)
    rng = capture_rng()
    partial = _through_disk(written.step_checkpoint(lambda obj: [obj], spec))
    state = {"epoch": 1, "partial": partial, "rng_ranks": [_through_disk(rng)]}
    after = (torch.rand(2, generator=written.dropout), torch.rand(2, generator=written.augment),
             random.random(), np.random.rand(), torch.rand(1))

    resumed = EpochProgress()
    assert resumed.load_step_checkpoint(Path("epoch-0002-batch-000003"), state, 0, 1, spec)
    assert resumed.resume_batch == 3
    random.random(), np.random.rand(), torch.rand(1)  # begin() puts the global RNGs back
    _begin(resumed)
    assert (resumed.batch, resumed.start, resumed.rows) == (3, 3, 12)
    assert resumed.sums.tolist() == written.sums.tolist() and resumed.resume_batch == 0
    again = (torch.rand(2, generator=resumed.dropout), torch.rand(2, generator=resumed.augment),
             random.random(), np.random.rand(), torch.rand(1))
    assert all(torch.equal(torch.as_tensor(a), torch.as_tensor(b))
               for a, b in zip(after, again, strict=True))
    # the next epoch starts afresh
    _begin(resumed)
    assert (resumed.batch, resumed.rows) == (0, 0) and resumed.sums.tolist() == [0.0, 0.0]


def test_the_checkpoint_entry_keeps_the_shape_saved_runs_have():
    """A step checkpoint's ``partial`` as runs on disk hold it (written before the epoch was
    an object): its keys must neither change nor stop loading."""
    progress = _begin(EpochProgress())
    progress.add(torch.tensor([1.0, 1.0]), rows=8)
    progress.flush(None)
    entry = progress.step_checkpoint(lambda obj: [obj, obj], _spec(seed=3))
    assert set(entry) == {"batch", "ranks", "settings"} and entry["batch"] == 1
    assert [set(r) for r in entry["ranks"]] == [{"sums", "rows", "dropout_rng", "augment_rng"}] * 2
    assert entry["settings"] == {"batch_size": 32, "accumulate": 1, "seed": 3,
                                 "sampler": "shuffle", "modality_dropout": 0.0}
    old = {"batch": 2, "ranks": [{"sums": torch.tensor([4.0, 2.0]), "rows": 8,
                                  "dropout_rng": torch.Generator().get_state(),
                                  "augment_rng": torch.Generator().get_state()}]}
    state = {"epoch": 1, "partial": old, "rng_ranks": [capture_rng()]}
    resumed = EpochProgress()  # no "settings": nothing to compare, as old checkpoints had
    assert resumed.load_step_checkpoint(Path("epoch-0002-batch-000002"), state, 0, 1,
                                        _spec(seed=3))
    _begin(resumed)
    assert (resumed.batch, resumed.rows, resumed.sums.tolist()) == (2, 8, [4.0, 2.0])
    assert not EpochProgress().load_step_checkpoint(Path("epoch-0001"), {"epoch": 1}, 0, 1,
                                                    _spec())


def test_a_step_checkpoint_is_refused_when_its_position_cannot_go_on():
    progress = _begin(EpochProgress())
    entry = progress.step_checkpoint(lambda obj: [obj], _spec(batch_size=8))
    state = {"epoch": 1, "partial": entry, "rng_ranks": [capture_rng()]}
    where = Path("epoch-0002-batch-000000")
    with pytest.raises(CheckpointError, match=r"train.batch_size=8 \(now 16\).*delete epoch-"):
        EpochProgress().load_step_checkpoint(where, state, 0, 1, _spec(batch_size=16))
    with pytest.raises(CheckpointError, match=r"inside epoch 2 by 1 process.*resume on 1"):
        EpochProgress().load_step_checkpoint(where, state, 0, 2, _spec(batch_size=8))
