"""The data layer (mmcore.data): caching, loaders, batches from rows and external data (the
rest: test_data.py)."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest
import torch

from mmcore.data import BadRow
from mmcore.errors import DataError
from tests import data_toy as toy
from tests.data_toy import all_rows, setup, table, write_csv


# -- caching ---------------------------------------------------------------------------------------
def test_second_setup_uses_the_cache_and_option_changes_recompute(registry, tmp_path):
    write_csv(tmp_path / "d.csv", table())
    data = {"path": str(tmp_path / "d.csv"), "split_column": "split"}
    setup(registry, data, tmp_path)
    assert toy.NumModality.calls == 30
    toy.NumModality.calls = 0
    dm = setup(registry, data, tmp_path)
    assert toy.NumModality.calls == 0
    assert all_rows(dm, "test")[0] == [25.0, 26.0, 27.0, 28.0, 29.0]

    scaled = {"x": {"plugin": "num", "column": "x", "options": {"scale": 2.0}}}
    dm = setup(registry, data, tmp_path, modalities=scaled)
    assert toy.NumModality.calls == 30
    assert all_rows(dm, "test")[0] == [50.0, 52.0, 54.0, 56.0, 58.0]

    toy.NumModality.calls = 0  # fitted state is part of the key (via fingerprint())
    centered = {"x": {"plugin": "num", "column": "x", "options": {"center": True}}}
    dm = setup(registry, data, tmp_path, modalities=centered)
    assert toy.NumModality.calls == 30
    assert all_rows(dm, "train")[0][0] == -9.5  # mean of the train split's x is 9.5

    toy.NumModality.calls = 0  # head options are part of the key
    heads = {"label": {"kind": "classification", "target": "label",
                       "options": {"classes": ["b", "a"]}}}
    dm = setup(registry, data, tmp_path, heads=heads)
    assert toy.NumModality.calls == 30
    batch = next(iter(dm.loader("train", batch_size=2, shuffle=False)))
    assert batch.targets["label"].tolist() == [1, 0]


def test_fit_uses_present_train_values_only_and_fit_false_keeps_spec_options(registry, tmp_path):
    rows = [{**row, "w": 1.0} for row in table()]
    rows[2]["x"] = None
    write_csv(tmp_path / "d.csv", rows)
    data = {"path": str(tmp_path / "d.csv"), "split_column": "split", "allow_missing": True}
    modalities = {
        "x": {"plugin": "num", "column": ["x", "x"]},  # two columns read as one value
        "w": {"plugin": "num", "column": "w"},
    }
    dm = setup(registry, data, tmp_path, modalities=modalities)
    fitted = dm.modalities["x"].fitted_on
    assert len(fitted) == 19 and fitted[:2] == [[0.0, 0.0], [1.0, 1.0]] and fitted[2] == [3.0, 3.0]
    assert dm.modalities["w"].fitted_on == [1.0] * 20

    heads = {"label": {"kind": "classification", "target": "label",
                       "options": {"classes": ["a", "b"]}}}
    dm = setup(registry, data, tmp_path, fit=False, heads=heads, modalities=modalities)
    assert dm.modalities["x"].fitted_on is None
    assert dm.head_options == {"label": {"classes": ["a", "b"]}}


# -- loaders ---------------------------------------------------------------------------------------
@pytest.fixture
def sequences(registry, tmp_path):
    rows = [
        {"x": json.dumps(list(range(1 + i % 4))), "label": "ab"[i % 2], "split": "train"}
        for i in range(24)
    ]
    write_csv(tmp_path / "d.csv", rows)
    return setup(registry, {"path": str(tmp_path / "d.csv"), "split_column": "split"}, tmp_path)


def test_loader_batches_shapes_masks_targets(sequences):
    batches = list(sequences.loader("train", batch_size=5, shuffle=False))
    assert [len(b) for b in batches] == [5, 5, 5, 5, 4]
    first = batches[0]
    assert first.inputs["x"].values.shape == (5, 4, 1)
    assert first.inputs["x"].values.dtype == torch.float32
    assert first.inputs["x"].mask.sum(1).tolist() == [1, 2, 3, 4, 1]
    assert first.inputs["x"].values[2, :, 0].tolist() == [0.0, 1.0, 2.0, 0.0]
    assert first.targets["label"].tolist() == [0, 1, 0, 1, 0]
    assert first.targets["label"].dtype == torch.int64
    assert first.index.tolist() == [0, 1, 2, 3, 4]
    dropping = sequences.loader("train", batch_size=5, shuffle=False, drop_last=True)
    assert [len(b) for b in dropping] == [5] * 4


def order(dm, batch_size=5, **kw) -> list[int]:
    return [i for b in dm.loader("train", batch_size=batch_size, **kw) for i in b.index.tolist()]


def _equal_batches(a, b) -> bool:
    def same(x, y):
        return (x is None and y is None) or (x is not None and y is not None and torch.equal(x, y))

    return (a.inputs.keys() == b.inputs.keys() and a.targets.keys() == b.targets.keys()
            and all(same(a.inputs[k].values, b.inputs[k].values)
                    and same(a.inputs[k].present, b.inputs[k].present)
                    and same(a.inputs[k].mask, b.inputs[k].mask) for k in a.inputs)
            and all(same(a.targets[k], b.targets[k]) for k in a.targets)
            and same(a.index, b.index))


def test_every_route_to_a_batch_collates_the_same_rows_alike(registry, tmp_path):
    """The cached loader (Arrow reads or in memory), the streaming loader and batch_from_rows
    give equal batches for the same rows, a missing modality included."""
    rows = [{**row, "w": None if i == 22 else 2.0 * i} for i, row in enumerate(table())]
    path = write_csv(tmp_path / "d.csv", rows)
    data = {"path": str(path), "split_column": "split", "allow_missing": True}
    modalities = {"x": {"plugin": "num", "column": "x"}, "w": {"plugin": "num", "column": "w"}}
    batches = []
    for extra in ({"in_memory": False}, {"in_memory": True}, {"streaming": True}):
        dm = setup(registry, {**data, **extra}, tmp_path, modalities=modalities)
        batches.append(next(iter(dm.loader("validation", batch_size=5, shuffle=False))))
    given = [{k: v for k, v in row.items() if k != "split"} for row in rows[20:25]]
    batches.append(dm.batch_from_rows(given))
    assert batches[0].inputs["w"].present.tolist() == [True, True, False, True, True]
    assert batches[0].index.tolist() == [0, 1, 2, 3, 4]
    for other in batches[1:]:
        assert _equal_batches(batches[0], other)


def test_collate_batch_stacks_targets_and_marks_missing_rows():
    from mmcore.collate import collate_batch
    from tests.toy import ToyModality

    modality = ToyModality("a")
    arrays = [np.array([1.0, 2.0], np.float32), None, np.array([3.0], np.float32)]
    batch = collate_batch({"a": modality}, {"a": arrays},
                          {"y": [np.int64(1), np.int64(0), np.int64(1)]}, np.arange(4, 7))
    assert batch.inputs["a"].present.tolist() == [True, False, True]
    assert batch.inputs["a"].mask.tolist() == [[True, True], [False, False], [True, False]]
    assert batch.targets["y"].tolist() == [1, 0, 1]
    assert batch.index.dtype == torch.int64 and batch.index.tolist() == [4, 5, 6]
    bare = collate_batch({"a": modality}, {"a": arrays})  # prediction: no targets, no index
    assert bare.targets == {} and bare.index is None and len(bare) == 3

def test_arrow_split_reads_rows_across_record_batches(tmp_path):
    from mmcore.data.loader import ArrowSplit

    ds = datasets.Dataset.from_dict({"v": [str(i) * (i % 5) for i in range(50)], "i": range(50)})
    ds = ds.map(lambda b: b, batched=True, writer_batch_size=7,
                cache_file_name=str(tmp_path / "t.arrow"))
    assert len(ds.data.table.to_batches()) == 8
    positions = np.random.default_rng(0).permutation(50)[:20]
    got = ArrowSplit(ds).read(positions)
    assert got.column("i").to_pylist() == positions.tolist()
    assert got.column("v").to_pylist() == [str(i) * (i % 5) for i in positions]
    kept = np.array([1, 9, 30, 49])
    assert ArrowSplit(ds, kept).read([3, 0]).column("i").to_pylist() == [49, 1]
    assert len(ArrowSplit(ds, kept)) == 4
    with pytest.raises(IndexError):
        ArrowSplit(ds).read([50])


def test_shuffle_is_a_function_of_seed_and_epoch(sequences):
    for batch in sequences.loader("train", batch_size=5, shuffle=True, seed=1):
        # each row's values belong to its index (x has 1 + index % 4 steps)
        assert (batch.inputs["x"].mask.sum(1) == 1 + batch.index % 4).all()
    a = order(sequences, shuffle=True, seed=1, epoch=0)
    assert sorted(a) == list(range(24)) and a != list(range(24))
    assert order(sequences, shuffle=True, seed=1, epoch=0) == a
    assert order(sequences, shuffle=True, seed=1, epoch=1) != a
    assert order(sequences, shuffle=True, seed=2, epoch=0) != a
    loader = sequences.loader("train", batch_size=5, shuffle=True, seed=1, epoch=0)
    loader.batch_sampler.set_epoch(1)
    expected = order(sequences, shuffle=True, seed=1, epoch=1)
    assert [i for b in loader for i in b.index.tolist()] == expected


def test_world_size_shards_are_disjoint_and_cover(sequences):
    shards = [order(sequences, shuffle=True, seed=5, epoch=2, rank=r, world_size=2) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 12
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(24))
    # 24 rows over 5 ranks: padded to 25 by repeating one row, so every rank runs as many steps
    five = [order(sequences, shuffle=True, seed=5, rank=r, world_size=5) for r in range(5)]
    assert {len(s) for s in five} == {5}
    assert set().union(*five) == set(range(24))
    dropped = [
        order(sequences, 2, shuffle=True, rank=r, world_size=5, drop_last=True) for r in range(5)
    ]
    assert sum(len(s) for s in dropped) == 20 and len(set().union(*dropped)) == 20


def test_loader_with_a_worker_matches(sequences):
    kw = {"batch_size": 6, "shuffle": True, "seed": 3}
    expected = [b.index.tolist() for b in sequences.loader("train", **kw)]
    got = [b.index.tolist() for b in sequences.loader("train", num_workers=1, **kw)]
    assert got == expected


def test_unknown_split(sequences):
    with pytest.raises(DataError, match="no split 'test'"):
        sequences.loader("test", batch_size=2, shuffle=False)


# -- prediction and external data ----------------------------------------------------------------
def test_batch_from_rows(registry, tmp_path):
    np.save(tmp_path / "arr.npy", np.array([7.0, 8.0], dtype=np.float32))
    write_csv(tmp_path / "d.csv", table())
    dm = setup(registry, {"path": str(tmp_path / "d.csv"), "split_column": "split"}, tmp_path)
    batch = dm.batch_from_rows([{"x": 1.5, "label": "b"}, {"x": "arr.npy", "label": "a"}])
    # arr.npy resolves against the data file's folder
    assert batch.inputs["x"].values[:, :, 0].tolist() == [[1.5, 0.0], [7.0, 8.0]]
    assert batch.targets["label"].tolist() == [1, 0]
    assert batch.index.tolist() == [0, 1]
    assert dm.batch_from_rows([{"x": 1.0}, {"x": 2.0, "label": "a"}]).targets == {}
    with pytest.raises(DataError, match=r"row 1, column 'x': value is not finite"):
        dm.batch_from_rows([{"x": 1.0}, {"x": float("inf")}])
    with pytest.raises(DataError, match="row 0, column 'x': every modality is missing"):
        dm.batch_from_rows([{"label": "a"}])


def test_external(registry, tmp_path):
    write_csv(tmp_path / "d.csv", table())
    dm = setup(registry, {"path": str(tmp_path / "d.csv"), "split_column": "split"}, tmp_path)
    other = tmp_path / "elsewhere"
    (other / "arrays").mkdir(parents=True)
    np.save(other / "arrays" / "a.npy", np.array([3.0], dtype=np.float32))
    write_csv(other / "new.csv", [{"x": "arrays/a.npy", "label": "b"}, {"x": 4.0, "label": "a"}])
    name = dm.external(other / "new.csv")
    assert name == "external" and "external" in dm.splits and dm.num_rows(name) == 2
    batch = next(iter(dm.loader(name, batch_size=8, shuffle=False)))
    assert batch.inputs["x"].values[:, 0, 0].tolist() == [3.0, 4.0]
    assert batch.targets["label"].tolist() == [1, 0]
    write_csv(other / "unlabelled.csv", [{"x": 1.0}])
    second = dm.external(other / "unlabelled.csv")
    assert second == "external2"
    assert next(iter(dm.loader(second, batch_size=8, shuffle=False))).targets == {}
    write_csv(other / "wrong.csv", [{"z": 1.0}])
    with pytest.raises(DataError, match="no column 'x'"):
        dm.external(other / "wrong.csv")


def test_bad_row_describe():
    bad = BadRow("train", 3, "x", "broken", "/d.csv", 7)
    assert bad.describe() == "split 'train', row 3 (row 7 of /d.csv), column 'x': broken"
