"""Checkpoints: atomic writes, exact round trips of training state without pickle, resume
picks the newest complete checkpoint, corruption is reported with the file's name."""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest
import torch
from torch import nn

from mmcore.errors import CheckpointError
from mmcore.run import checkpoint as ck
from mmcore.run.state import capture_rng, flatten, restore_rng, unflatten
from mmcore.spec import TrainSpec
from mmcore.strategy import load_optimizer_state
from mmcore.train.optim import build_optimizer, build_scheduler


def _trained_optimizer(kind: str = "adamw"):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    train = TrainSpec(optimizer=kind, scheduler="cosine", warmup_steps=2, lr=0.1)
    opt = build_optimizer(model, train)
    sched = build_scheduler(opt, train, total_steps=10)
    for _ in range(3):
        model(torch.randn(5, 3)).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
        sched.step()
    return model, opt, sched, train


def _same(a, b) -> None:
    """Deep equality of nested states, tensors compared exactly (dtype and values)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b)
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _same(x, y)
    else:
        assert a == b or (a != a and b != b), (a, b)


@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_optimizer_and_scheduler_state_round_trip_exactly(tmp_path, kind):
    model, opt, sched, train = _trained_optimizer(kind)
    state = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "nan": float("nan")}
    path = ck.write_checkpoint(tmp_path, 3, ck.model_tensors(model), state)
    back = ck.read_checkpoint(path)
    assert back.epoch == 3
    _same(state, back.state)
    # The restored state continues training exactly like the original.
    model2 = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    ck.apply_weights(model2, back.model, path / ck.MODEL_FILE)
    opt2 = build_optimizer(model2, train)
    sched2 = build_scheduler(opt2, train, total_steps=10)
    opt2.load_state_dict(back.state["optimizer"])
    sched2.load_state_dict(back.state["scheduler"])
    x = torch.randn(5, 3)
    for m, o, s in ((model, opt, sched), (model2, opt2, sched2)):
        m(x).pow(2).mean().backward()
        o.step()
        s.step()
    for p1, p2 in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(p1, p2)
    assert sched.get_last_lr() == sched2.get_last_lr()


def test_a_channels_last_convolution_resumes_exactly(tmp_path):
    # the image encoder keeps its convolutions channels-last; a checkpoint stores the
    # optimizer's state contiguous, and torch's fused AdamW steps a parameter and its state
    # as flat memory: the state must come back laid out as its parameter, or the resumed
    # steps go element against wrong element
    def conv():
        torch.manual_seed(0)
        return nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)

    train = TrainSpec(optimizer="adamw", lr=0.1)
    model = conv()
    opt = build_optimizer(model, train)
    x = torch.randn(2, 3, 6, 6).contiguous(memory_format=torch.channels_last)
    model(x).pow(2).mean().backward()
    opt.step()
    opt.zero_grad()
    path = ck.write_checkpoint(tmp_path, 1, ck.model_tensors(model),
                               {"optimizer": opt.state_dict()})
    back = ck.read_checkpoint(path)
    resumed = conv()
    ck.apply_weights(resumed, back.model, path / ck.MODEL_FILE)
    opt2 = build_optimizer(resumed, train)
    load_optimizer_state(opt2, back.state["optimizer"])
    for m, o in ((model, opt), (resumed, opt2)):
        m(x).pow(2).mean().backward()
        o.step()
    assert resumed.weight.is_contiguous(memory_format=torch.channels_last)
    for p1, p2 in zip(model.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p1, p2)


def test_tied_viewed_and_transposed_tensors_are_written_whole(tmp_path):
    # the checkpoint copies only what safetensors cannot read as it is: tied weights (one
    # storage under two names), a transposed view, a row of another tensor and lazy
    # conjugate and negated views still come
    # back with their own values, and the model's own tensors are not changed
    weight = torch.randn(4, 3)
    tensors = {"encoder.weight": weight, "decoder.weight": weight, "transposed": weight.t(),
               "row": weight[1], "empty": torch.zeros(0), "empty_too": torch.zeros(0),
               "conjugate": torch.tensor([1 + 2j]).conj(), "negated": torch._neg_view(weight[0])}
    before = weight.clone()
    ck.save_tensors(tmp_path / "m.safetensors", tensors)
    loaded = ck.load_tensors(tmp_path / "m.safetensors")
    assert set(loaded) == set(tensors)
    for name, tensor in tensors.items():
        assert torch.equal(loaded[name], tensor), name
    loaded["encoder.weight"].add_(1)  # stored twice, not tied on loading
    assert torch.equal(loaded["decoder.weight"], before) and torch.equal(weight, before)


def test_flatten_keeps_key_types_tuples_and_arrays():
    tensors: dict[str, torch.Tensor] = {}
    obj = {"s": {0: torch.arange(3), 1: (1, 2.5, None)}, "arr": np.arange(4, dtype=np.int64),
           "list": [True, "x", {"__tensor__": 1}]}
    skeleton = flatten(obj, "root", tensors)
    json.dumps(skeleton)  # JSON-ready
    back = unflatten(json.loads(json.dumps(skeleton)), tensors)
    assert list(back["s"]) == [0, 1] and back["s"][1] == (1, 2.5, None)
    assert torch.equal(back["s"][0], torch.arange(3))
    assert isinstance(back["arr"], np.ndarray) and back["arr"].tolist() == [0, 1, 2, 3]
    assert back["list"] == [True, "x", {"__tensor__": 1}]
    with pytest.raises(TypeError, match="root/bad"):
        flatten({"bad": object()}, "root", {})


def test_rng_states_restore_every_generator(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.normal()  # leaves a cached gaussian in numpy's state
    random.gauss()  # and in Python's
    path = ck.write_checkpoint(tmp_path, 1, {}, {"rng": capture_rng()})
    expected = (random.gauss(), random.random(), np.random.normal(), torch.rand(3))
    restore_rng(ck.read_checkpoint(path).state["rng"])
    got = (random.gauss(), random.random(), np.random.normal(), torch.rand(3))
    assert expected[:3] == got[:3] and torch.equal(expected[3], got[3])
    # Python's state is one array in the tensors file, not 625 numbers in the JSON
    assert len((path / ck.STATE_JSON).read_text()) < 2_000


def test_rng_states_of_older_checkpoints_restore(tmp_path):
    """Checkpoints written before the state was an array keep Python's as nested lists."""
    random.seed(4)
    state = capture_rng()
    version, words, gauss = random.getstate()
    state["python"] = [version, list(words), gauss]
    expected = random.random()
    random.seed(5)
    restore_rng(state)
    assert random.random() == expected


def test_checkpoint_files_are_not_pickles(tmp_path):
    model, opt, sched, _ = _trained_optimizer()
    path = ck.write_checkpoint(tmp_path, 1, ck.model_tensors(model),
                               {"optimizer": opt.state_dict(), "rng": capture_rng()})
    for file in path.iterdir():
        head = file.read_bytes()[:2]
        assert head[:1] != b"\x80" and head != b"PK", f"{file.name} looks like a pickle/zip"
    assert json.loads((path / ck.STATE_JSON).read_text())["format"] == ck.STATE_FORMAT


def test_latest_skips_incomplete_and_temporary_folders(tmp_path):
    root = tmp_path / "checkpoints"
    first = ck.write_checkpoint(root, 1, {"w": torch.ones(2)}, {"epoch": 1})
    ck.write_checkpoint(root, 2, {"w": torch.ones(2) * 2}, {"epoch": 2})
    # A run killed while writing epoch 3: a temp folder, then an unmarked folder + pointer.
    (root / ".tmp-epoch-0003-abcd").mkdir()
    (root / "epoch-0003").mkdir()
    (root / "epoch-0003" / ck.MODEL_FILE).write_bytes(b"partial")
    (root / ck.LATEST).write_text("epoch-0003\n")
    latest = ck.latest_checkpoint(root)
    assert latest == root / "epoch-0002"
    assert torch.equal(ck.read_checkpoint(latest).model["w"], torch.ones(2) * 2)
    with pytest.raises(CheckpointError, match="no COMPLETE marker"):
        ck.read_checkpoint(root / "epoch-0003")
    deleted = ck.prune_checkpoints(root, keep=1)
    assert {p.name for p in deleted} == {first.name, ".tmp-epoch-0003-abcd", "epoch-0003"}
    assert [p.name for p in ck.complete_checkpoints(root)] == ["epoch-0002"]


def test_corrupted_files_name_the_file(tmp_path):
    path = ck.write_checkpoint(tmp_path, 1, {"w": torch.arange(100.0)}, {"t": torch.ones(4)})
    model_file = path / ck.MODEL_FILE
    data = bytearray(model_file.read_bytes())
    data[-5] ^= 0xFF  # a flipped bit inside the tensor data: safetensors alone cannot tell
    model_file.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=str(model_file)):
        ck.read_checkpoint(path)
    truncated = tmp_path / "trunc.safetensors"
    ck.save_tensors(truncated, {"w": torch.arange(10.0)})
    truncated.write_bytes(truncated.read_bytes()[:20])
    with pytest.raises(CheckpointError, match="trunc.safetensors.*corrupted"):
        ck.load_tensors(truncated)
    with pytest.raises(CheckpointError, match="missing.safetensors.*not found"):
        ck.load_tensors(tmp_path / "missing.safetensors")


def test_weights_that_do_not_fit_name_the_keys(tmp_path):
    file = tmp_path / "model.safetensors"
    ck.save_tensors(file, {"0.weight": torch.zeros(2, 2), "extra": torch.zeros(1)})
    with pytest.raises(CheckpointError, match=r"missing 0\.bias.*unexpected extra.*shape"):
        ck.load_weights(nn.Sequential(nn.Linear(3, 2)), file)


def test_atomic_write_keeps_the_old_file_when_the_rename_fails(tmp_path, monkeypatch):
    target = tmp_path / "model.safetensors"
    ck.save_tensors(target, {"w": torch.ones(3)})
    before = target.read_bytes()

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        ck.save_tensors(target, {"w": torch.zeros(3)})
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temp left


def test_copy_dir_atomic_replaces_the_whole_folder(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("new")
    (src / "b").write_text("skip")
    dst = tmp_path / "best"
    dst.mkdir()
    (dst / "old").write_text("old")
    ck.copy_dir_atomic(src, dst, ["a"], {"info.json": {"epoch": 2}})
    assert sorted(p.name for p in dst.iterdir()) == ["a", "info.json"]
    assert json.loads((dst / "info.json").read_text()) == {"epoch": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "src"]


@pytest.mark.parametrize("links", [True, False])
def test_the_best_weights_are_linked_not_copied_where_the_file_system_can(tmp_path, monkeypatch,
                                                                          links):
    """Publishing a checkpoint's weights as the best links them into ``best/`` (no bytes
    copied) or, where the file system cannot link, copies them; the run's own
    ``model.safetensors``, the file a user handles, is always a copy. Either way the best
    survives the checkpoint's pruning and a later best replaces it whole."""
    from mmcore.run.layout import RunFolder
    from mmcore.train.records import publish_best

    if not links:
        def refuse(src, dst):
            raise OSError(18, "Invalid cross-device link")

        monkeypatch.setattr(os, "link", refuse)
    run = RunFolder(tmp_path / "run")
    first = ck.write_checkpoint(run.checkpoints, 1, {"w": torch.ones(3)}, {})
    publish_best(run, first, {"epoch": 1})
    inode = (first / ck.MODEL_FILE).stat().st_ino
    assert ((run.best / ck.MODEL_FILE).stat().st_ino == inode) == links
    assert run.model.stat().st_ino != inode
    second = ck.write_checkpoint(run.checkpoints, 2, {"w": torch.full((3,), 2.0)}, {})
    ck.prune_checkpoints(run.checkpoints, 1)
    assert not first.exists()
    assert torch.equal(ck.load_tensors(run.best / ck.MODEL_FILE)["w"], torch.ones(3))
    publish_best(run, second, {"epoch": 2})
    for path in (run.best / ck.MODEL_FILE, run.model):
        assert torch.equal(ck.load_tensors(path)["w"], torch.full((3,), 2.0))
    assert json.loads((run.best / ck.BEST_INFO).read_text()) == {"epoch": 2}
