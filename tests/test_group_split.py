"""data.split.group_column: whole groups per split, fractions in rows, stratified, checked."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from mmcore.data import DataModule
from mmcore.data.splits import grouped_split
from mmcore.errors import DataError
from mmcore.model import build_modalities
from tests import data_toy as toy


def _table(seed: int, n_groups: int = 25) -> tuple[np.ndarray, np.ndarray]:
    """Groups of 1..12 rows; each group mostly one class, three classes, one rare."""
    rng = np.random.default_rng(seed)
    groups, labels = [], []
    for g in range(n_groups):
        size = int(rng.integers(1, 13))
        main = rng.choice(3, p=[0.6, 0.3, 0.1])
        groups += [f"signer{g}"] * size
        labels += [int(main if rng.random() < 0.8 else rng.integers(3)) for _ in range(size)]
    return np.array(groups), np.array(labels)


@pytest.mark.parametrize("seed", range(40))
def test_no_group_on_two_sides_and_fractions_roughly_met(seed):
    groups, labels = _table(seed)
    out = grouped_split(groups, 0.2, 0.1, seed=seed, labels=labels)
    rows = np.concatenate(list(out.values()))
    assert sorted(rows.tolist()) == list(range(len(groups)))  # every row once
    sides = [set(groups[idx]) for idx in out.values()]
    for i in range(len(sides)):
        for j in range(i + 1, len(sides)):
            assert not sides[i] & sides[j]
    biggest = max(np.unique(groups, return_counts=True)[1])
    for name, frac in (("validation", 0.2), ("test", 0.1)):
        got = len(out.get(name, ()))
        assert abs(got - round(len(groups) * frac)) <= biggest
    assert set(labels[out["train"]]) == set(labels)  # every class keeps train rows


def test_fractions_are_met_exactly_when_groups_are_small():
    groups = np.repeat(np.arange(100), 2)  # 100 groups of 2 rows
    out = grouped_split(groups, 0.2, 0.1, seed=0)
    assert [len(out[s]) for s in ("train", "validation", "test")] == [140, 40, 20]


def test_deterministic_for_a_seed_and_varies_with_it():
    groups, labels = _table(7, n_groups=60)
    a = grouped_split(groups, 0.2, 0.1, seed=3, labels=labels)
    b = grouped_split(groups, 0.2, 0.1, seed=3, labels=labels)
    assert all(np.array_equal(a[s], b[s]) for s in a) and set(a) == set(b)
    c = grouped_split(groups, 0.2, 0.1, seed=4, labels=labels)
    assert not np.array_equal(a["validation"], c["validation"])


def test_a_class_held_by_one_group_stays_in_train():
    groups = ["g0"] * 5 + ["g1"] * 5 + ["g2"] * 5 + ["rare"] * 2
    labels = ["a"] * 15 + ["z"] * 2
    for seed in range(20):
        out = grouped_split(groups, 0.3, 0.3, seed=seed, labels=labels)
        assert {15, 16} <= set(out["train"].tolist())


def test_stratification_keeps_class_shares_close():
    # 40 groups of one class each: 30 of "a", 10 of "b", 5 rows apiece
    groups = np.repeat(np.arange(40), 5)
    labels = np.where(groups < 30, "a", "b")
    out = grouped_split(groups, 0.2, 0.2, seed=1, labels=labels)
    for name in ("validation", "test"):
        share = (labels[out[name]] == "b").mean()
        assert abs(share - 0.25) <= 0.15


# -- through DataModule ------------------------------------------------------------------------


def _write(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _module(registry, tmp_path, rows, **data) -> DataModule:
    data = {"path": str(_write(tmp_path / "d.csv", rows)), "cache_dir": str(tmp_path / "c"),
            **data}
    spec = toy.make_spec(registry, data)
    dm = DataModule(spec, build_modalities(spec, registry), registry=registry, progress=False)
    dm.setup()
    return dm


def _rows(n: int = 60) -> list[dict]:
    return [{"x": float(i), "label": "ab"[i % 2], "signer": f"s{i // 4}"} for i in range(n)]


def test_setup_keeps_every_signer_on_one_side(registry, tmp_path):
    rows = _rows()
    dm = _module(registry, tmp_path, rows, split={"group_column": "signer", "validation": 0.2,
                                                  "test": 0.2})
    seen: dict[str, str] = {}
    for split in dm.splits:
        for batch in dm.loader(split, batch_size=16, shuffle=False):
            for x in batch.inputs["x"].values[:, 0, 0].tolist():
                signer = rows[int(x)]["signer"]
                assert seen.setdefault(signer, split) == split
    assert [dm.num_rows(s) for s in dm.splits] == [36, 12, 12]


def test_missing_group_column_is_named(registry, tmp_path):
    with pytest.raises(DataError, match=r"'speaker' \(data.split.group_column\)"):
        _module(registry, tmp_path, _rows(), split={"group_column": "speaker"})


def test_empty_group_value_names_column_and_first_row(registry, tmp_path):
    rows = _rows()
    rows[7]["signer"] = ""
    rows[9]["signer"] = ""
    with pytest.raises(DataError, match=r"group_column 'signer' is empty in 2 row.*first: row 7"):
        _module(registry, tmp_path, rows, split={"group_column": "signer"})


def test_group_column_with_split_column_is_refused(registry, tmp_path):
    rows = [{**r, "split": "train"} for r in _rows()]
    with pytest.raises(DataError, match="group_column='signer'.*split_column='split'"):
        _module(registry, tmp_path, rows, split_column="split",
                split={"group_column": "signer"})


def test_streamed_split_hashes_the_group_so_groups_stay_whole(registry, tmp_path):
    rows = _rows(80)
    dm = _module(registry, tmp_path, rows, streaming=True,
                 split={"group_column": "signer", "validation": 0.3, "test": 0.3})
    seen: dict[str, str] = {}
    for split in dm.splits:
        for batch in dm.loader(split, batch_size=16, shuffle=False):
            for x in batch.inputs["x"].values[:, 0, 0].tolist():
                assert seen.setdefault(rows[int(x)]["signer"], split) == split
    assert len(seen) == 20 and len(set(seen.values())) > 1
