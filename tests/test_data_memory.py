"""Splits held in memory (``data.in_memory``) give the same batches as reads from the cache."""

from __future__ import annotations

import numpy as np
import torch

from mmcore.batch import Batch
from mmcore.data.memory import MemorySplit
from mmcore.plugins import get_registry
from tests import data_toy as toy
from tests.data_toy import TWO, setup, two_modality_rows, write_csv


def batches(dm, split: str, **kw) -> list[Batch]:
    return list(dm.loader(split, batch_size=3, shuffle=True, seed=4, epoch=1, **kw))


def assert_same(a: list[Batch], b: list[Batch]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.index, y.index)
        assert x.targets.keys() == y.targets.keys()
        for k in x.targets:
            assert torch.equal(x.targets[k], y.targets[k])
        assert x.inputs.keys() == y.inputs.keys()
        for k, mx in x.inputs.items():
            my = y.inputs[k]
            assert mx.values.dtype == my.values.dtype
            assert torch.equal(mx.values, my.values) and torch.equal(mx.present, my.present)
            assert (mx.mask is None) == (my.mask is None)
            if mx.mask is not None:
                assert torch.equal(mx.mask, my.mask)


def test_memory_batches_equal_cache_reads_with_missing_values(tmp_path):
    registry = toy.toy_registry()
    write_csv(tmp_path / "d.csv", [r for i, r in enumerate(two_modality_rows()) if i != 5])
    data = {"path": str(tmp_path / "d.csv"), "split_column": "split", "allow_missing": True}
    on = setup(registry, {**data, "in_memory": True}, tmp_path, modalities=TWO)
    off = setup(registry, {**data, "in_memory": False}, tmp_path, modalities=TWO)
    got = batches(on, "train")
    assert isinstance(on.store("train").memory, MemorySplit)  # held, and kept for the next epoch
    assert "y" in on.store("train").memory.ragged  # a missing value: one array per row
    assert "x" in on.store("train").memory.fixed
    assert off.store("train").memory is None
    assert_same(got, batches(off, "train"))


def write_sequences(path, lengths: list[int]) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for i, n in enumerate(lengths):
        seq = rng.normal(size=(n, 2)).round(3).tolist()
        rows.append({"seq": str(seq).replace(" ", ""), "label": "ab"[i % 2],
                     "split": "train" if i < len(lengths) - 4 else "validation"})
    write_csv(path, rows)


def test_plugin_stacked_collation_equals_collate(tmp_path):
    """A fixed-length sequence split goes through ``collate_stacked`` (the gesture plugin's
    one-call path), a variable-length one through ``collate``; both equal the cache reads."""
    registry = get_registry()
    spec_mod = {"g": {"plugin": "gesture", "column": "seq", "options": {"channels": 2}}}
    for lengths, kind in (([5] * 12, "fixed"), ([3, 5, 4, 6] * 3, "ragged")):
        folder = tmp_path / kind
        write_sequences(folder / "d.csv", lengths)
        data = {"path": str(folder / "d.csv"), "split_column": "split"}
        on = setup(registry, {**data, "in_memory": True}, folder, modalities=spec_mod)
        off = setup(registry, {**data, "in_memory": False}, folder, modalities=spec_mod)
        for split in ("train", "validation"):
            assert_same(batches(on, split), batches(off, split))
        assert "g" in getattr(on.store("train").memory, kind)


def test_auto_holds_small_splits(tmp_path):
    registry = toy.toy_registry()
    write_csv(tmp_path / "d.csv", [r for i, r in enumerate(two_modality_rows()) if i != 5])
    data = {"path": str(tmp_path / "d.csv"), "split_column": "split", "allow_missing": True}
    dm = setup(registry, data, tmp_path, modalities=TWO)  # in_memory defaults to "auto"
    batches(dm, "train")
    assert dm.store("train").memory is not None
