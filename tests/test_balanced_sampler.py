"""train.sampler="balanced": class-balanced draws with replacement, per (seed, epoch), sharded."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mmcore.data import DataModule
from mmcore.data.loader import ShardedBatchSampler, balanced_order
from mmcore.errors import DataError
from mmcore.model import build_modalities
from mmcore.spec import validate_spec

# 90 / 9 / 1 rows: a strongly imbalanced toy table
CODES = np.array([0] * 90 + [1] * 9 + [2] * 1)


def _module(registry, tmp_path: Path, heads=None, streaming=False, sampler="balanced"):
    path = tmp_path / "d.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["x", "label", "split"])
        writer.writeheader()
        for i, code in enumerate(CODES):
            writer.writerow({"x": float(i), "label": "abc"[code], "split": "train"})
    spec = validate_spec(
        {
            "data": {"path": str(path), "split_column": "split", "streaming": streaming,
                     "cache_dir": str(tmp_path / "cache")},
            "modalities": {"x": {"plugin": "num", "column": "x"}},
            "heads": heads or {"label": {"kind": "classification", "target": "label"}},
            "train": {"sampler": sampler, "callbacks": []},
        },
        registry=registry,
    )
    dm = DataModule(spec, build_modalities(spec, registry), registry=registry, progress=False)
    return dm


def test_balanced_order_draws_every_class_about_equally():
    order = balanced_order(np.repeat(CODES, 100), seed=0, epoch=0)  # 10,000 draws
    assert len(order) == 10_000
    freq = np.bincount(np.repeat(CODES, 100)[order], minlength=3) / len(order)
    assert np.allclose(freq, 1 / 3, atol=0.03)


def test_balanced_order_is_a_pure_function_of_seed_and_epoch():
    a = balanced_order(CODES, seed=5, epoch=2)
    assert np.array_equal(a, balanced_order(CODES, seed=5, epoch=2))
    assert not np.array_equal(a, balanced_order(CODES, seed=5, epoch=3))
    assert not np.array_equal(a, balanced_order(CODES, seed=6, epoch=2))
    assert len(balanced_order(CODES[:0], 0, 0)) == 0


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_take_disjoint_slices_of_one_global_order(world_size):
    samplers = [
        ShardedBatchSampler(len(CODES), 8, shuffle=True, seed=1, epoch=4, rank=r,
                            world_size=world_size, balance_by=CODES)
        for r in range(world_size)
    ]
    shards = [s.rows() for s in samplers]
    order = balanced_order(CODES, seed=1, epoch=4)
    order = np.resize(order, len(shards[0]) * world_size)  # padded like the shuffled order
    for rank, shard in enumerate(shards):
        assert np.array_equal(shard, order[rank::world_size])
    # interleaved, the shards are exactly the global order: disjoint slices that cover it
    woven = np.empty(len(order), dtype=np.int64)
    for rank, shard in enumerate(shards):
        woven[rank::world_size] = shard
    assert np.array_equal(woven, order)
    assert np.array_equal(order[: len(CODES)], balanced_order(CODES, seed=1, epoch=4))
    assert len({len(s) for s in shards}) == 1  # every rank runs the same number of steps
    batches = [list(s) for s in samplers]
    assert [len(b) for b in batches] == [len(s) for s in samplers]


def test_loader_batches_are_roughly_class_balanced(registry, tmp_path):
    dm = _module(registry, tmp_path)
    dm.setup()
    seen: Counter[int] = Counter()
    for epoch in range(30):
        loader = dm.loader("train", batch_size=16, shuffle=True, seed=0, epoch=epoch,
                           balanced=True)
        for batch in loader:
            seen.update(batch.targets["label"].tolist())
    assert sum(seen.values()) == 30 * len(CODES)  # epoch length = the number of train rows
    freq = np.array([seen[k] for k in range(3)]) / sum(seen.values())
    assert np.allclose(freq, 1 / 3, atol=0.05)
    first = [b.index.tolist() for b in dm.loader("train", batch_size=16, shuffle=True, seed=0,
                                                 epoch=1, balanced=True)]
    again = [b.index.tolist() for b in dm.loader("train", batch_size=16, shuffle=True, seed=0,
                                                 epoch=1, balanced=True)]
    assert first == again


def test_class_codes_skip_nothing_and_follow_split_order(registry, tmp_path):
    dm = _module(registry, tmp_path)
    dm.setup()
    assert np.array_equal(dm.class_codes("train"), CODES)


def test_balanced_needs_a_classification_head(registry, tmp_path):
    heads = {"score": {"kind": "regression", "target": "x"}}
    dm = _module(registry, tmp_path, heads=heads)
    with pytest.raises(DataError, match=r"train.sampler='balanced'.*no head is a classification"):
        dm.setup()


def test_balanced_is_refused_with_streaming(registry, tmp_path):
    dm = _module(registry, tmp_path, streaming=True)
    with pytest.raises(DataError, match=r"train.sampler='balanced'.*data.streaming=True"):
        dm.setup()


def test_the_option_is_validated(registry, tmp_path):
    with pytest.raises(Exception, match="sampler"):
        _module(registry, tmp_path, sampler="oversample")
