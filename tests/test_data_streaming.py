"""The data layer in streaming mode (data.streaming=True)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from mmcore.data import DataModule
from mmcore.errors import DataError
from mmcore.model import build_modalities
from tests import data_toy as toy


def write_rows(path: Path, n: int = 40, bad: tuple[int, ...] = ()) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["x", "label", "split"])
        for i in range(n):
            split = "train" if i < n - 10 else ("validation" if i < n - 5 else "test")
            writer.writerow(["inf" if i in bad else i, "ab"[i % 2], split])
    return path


def module(tmp_path, data, **spec_kw):
    registry = toy.toy_registry()
    spec = toy.make_spec(registry, {"streaming": True, **data}, **spec_kw)
    dm = DataModule(spec, build_modalities(spec, registry), registry=registry, progress=False)
    dm.setup()
    return dm


def xs(loader) -> list[float]:
    return [x for b in loader for x in b.inputs["x"].values[:, 0, 0].tolist()]


def test_streaming_split_column_fit_and_batches(tmp_path):
    toy.NumModality.calls = 0
    dm = module(tmp_path, {"path": str(write_rows(tmp_path / "d.csv")), "split_column": "split"})
    assert toy.NumModality.calls == 0  # nothing is preprocessed up front
    assert dm.splits == ["train", "validation", "test"]
    assert dm.head_options["label"]["classes"] == ["a", "b"]
    assert dm.num_rows("train") == 30
    batches = list(dm.loader("train", batch_size=8, shuffle=False))
    assert [len(b) for b in batches] == [8, 8, 8, 6]
    assert batches[0].targets["label"].tolist() == [0, 1] * 4
    assert xs(dm.loader("test", batch_size=8, shuffle=False)) == [35.0, 36.0, 37.0, 38.0, 39.0]
    # an external file is read in full (not streamed) with the fitted state
    name = dm.external(write_rows(tmp_path / "more.csv", n=12))
    assert dm.num_rows(name) == 12
    assert xs(dm.loader(name, batch_size=5, shuffle=False)) == [float(i) for i in range(12)]


def test_streaming_shuffle_and_shards(tmp_path):
    dm = module(tmp_path, {"path": str(write_rows(tmp_path / "d.csv")), "split_column": "split"})
    a = xs(dm.loader("train", batch_size=8, shuffle=True, seed=1, epoch=0))
    assert sorted(a) == [float(i) for i in range(30)] and a != sorted(a)
    assert xs(dm.loader("train", batch_size=8, shuffle=True, seed=1, epoch=0)) == a
    assert xs(dm.loader("train", batch_size=8, shuffle=True, seed=1, epoch=1)) != a
    shards = [xs(dm.loader("train", batch_size=4, shuffle=True, seed=1, rank=r, world_size=2))
              for r in (0, 1)]
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == [float(i) for i in range(30)]


def test_streaming_seeded_split_and_bad_rows(tmp_path):
    path = write_rows(tmp_path / "d.csv", n=200, bad=(3,))
    dm = module(tmp_path, {"path": str(path), "bad_rows": "skip"})
    seen = {s: xs(dm.loader(s, batch_size=50, shuffle=False)) for s in dm.splits}
    everything = sorted(x for v in seen.values() for x in v)
    assert everything == [float(i) for i in range(200) if i != 3]
    assert 150 <= len(seen["train"]) <= 175  # about 80% by a seeded hash
    assert [(b.column, b.reason) for b in dm.bad_rows] == [("x", "value is not finite")]
    again = module(tmp_path, {"path": str(path), "bad_rows": "skip"})
    assert xs(again.loader("validation", batch_size=50, shuffle=False)) == seen["validation"]

    raising = module(tmp_path, {"path": str(path)})
    with pytest.raises(DataError, match="column 'x': value is not finite"):
        for split in raising.splits:
            list(raising.loader(split, batch_size=50, shuffle=False))


def test_streaming_checks_columns_first(tmp_path):
    path = write_rows(tmp_path / "d.csv")
    with pytest.raises(DataError, match="no column 'y'.*Its columns are: x, label, split"):
        module(tmp_path, {"path": str(path)}, modalities={"y": {"plugin": "num", "column": "y"}})
