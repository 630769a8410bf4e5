"""The data layer (mmcore.data): rows lacking a modality and bad rows, each named, counted and
written (sources and splits: test_data.py)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from mmcore.errors import DataError
from tests import data_toy as toy
from tests.data_toy import TWO, setup, table, two_modality_rows, write_csv

# -- missing modalities and bad rows --------------------------------------------------------------


def test_missing_modality_needs_allow_missing(registry, tmp_path):
    write_csv(tmp_path / "d.csv", two_modality_rows()[:5])
    data = {"path": str(tmp_path / "d.csv"), "split_column": "split"}
    with pytest.raises(DataError) as info:
        setup(registry, data, tmp_path, modalities=TWO)
    assert "split 'train', row 3" in str(info.value)
    assert "column 'y'" in str(info.value)
    assert "set data.allow_missing=True" in str(info.value)

    dm = setup(registry, {**data, "allow_missing": True}, tmp_path, modalities=TWO)
    batch = next(iter(dm.loader("train", batch_size=5, shuffle=False)))
    assert batch.inputs["y"].present.tolist() == [True, True, True, False, True]
    assert batch.inputs["x"].present.all()
    assert batch.inputs["y"].values[3].abs().sum() == 0


def test_row_lacking_every_modality_is_always_bad(registry, tmp_path):
    write_csv(tmp_path / "d.csv", two_modality_rows())
    data = {"path": str(tmp_path / "d.csv"), "split_column": "split", "allow_missing": True}
    with pytest.raises(DataError, match="row 5.*every modality is missing"):
        setup(registry, data, tmp_path, modalities=TWO)
    dm = setup(registry, {**data, "bad_rows": "skip"}, tmp_path, modalities=TWO)
    assert [(b.row, b.column) for b in dm.bad_rows] == [(5, "x,y")]
    assert dm.num_rows("train") == 9


def bad_rows_table() -> list[dict]:
    rows = table()
    rows[4]["x"] = "inf"  # preprocess raises ValueError
    rows[6]["label"] = None  # missing target
    rows[22]["label"] = "c"  # validation label not seen in train
    return rows


def test_bad_rows_raise_names_split_row_and_column(registry, tmp_path):
    write_csv(tmp_path / "d.csv", bad_rows_table())
    with pytest.raises(DataError) as info:
        setup(registry, {"path": str(tmp_path / "d.csv"), "split_column": "split"}, tmp_path)
    message = str(info.value)
    assert "split 'train', row 4" in message and "column 'x'" in message
    assert "data.bad_rows='skip'" in message


def test_bad_rows_skip_counts_lists_and_writes(registry, tmp_path, capsys):
    write_csv(tmp_path / "d.csv", bad_rows_table())
    data = {"path": str(tmp_path / "d.csv"), "split_column": "split", "bad_rows": "skip"}
    dm = setup(registry, data, tmp_path, output_dir=tmp_path / "run")
    assert [(b.split, b.row, b.column) for b in dm.bad_rows] == [
        ("train", 4, "x"), ("train", 6, "label"), ("validation", 2, "label")
    ]
    assert dm.bad_rows[2].source_row == 22
    assert "not one of the classes" in dm.bad_rows[2].reason
    assert "missing target" in dm.bad_rows[1].reason
    assert [dm.num_rows(s) for s in dm.splits] == [18, 4, 5]
    index = sorted(i for b in dm.loader("train", batch_size=4, shuffle=True) for i in b.index)
    assert [int(i) for i in index] == [i for i in range(20) if i not in (4, 6)]
    err = capsys.readouterr().err
    assert "skipped 3 bad row(s)" in err and "train: 2 of 20" in err
    saved = json.loads((tmp_path / "run" / "bad_rows.json").read_text())
    assert saved[0] == {"split": "train", "row": 4, "column": "x", "reason": "value is not finite",
                        "file": str(tmp_path / "d.csv"), "source_row": 4}
    dm.write_bad_rows(tmp_path / "bad.csv")
    with (tmp_path / "bad.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == 3

    # the cached table serves the other policy: raise on the same first bad row
    toy.NumModality.calls = 0
    with pytest.raises(DataError, match="split 'train', row 4"):
        setup(registry, {**data, "bad_rows": "raise"}, tmp_path)
    assert toy.NumModality.calls == 0


def test_bad_regression_target_in_train(registry, tmp_path):
    rows = [{"x": float(i), "y": str(i), "split": "train"} for i in range(10)]
    rows[7]["y"] = "seven"
    write_csv(tmp_path / "d.csv", rows)
    data = {"path": str(tmp_path / "d.csv"), "split_column": "split"}
    heads = {"y": {"kind": "regression", "target": "y"}}
    with pytest.raises(DataError, match="split 'train', row 7.*column 'y': target of head 'y'"):
        setup(registry, data, tmp_path, heads=heads)
    dm = setup(registry, {**data, "bad_rows": "skip"}, tmp_path, heads=heads)
    assert [(b.row, b.column) for b in dm.bad_rows] == [(7, "y")]
    assert dm.head_options["y"]["mean"] == [pytest.approx(np.mean([0, 1, 2, 3, 4, 5, 6, 8, 9]))]
    batch = next(iter(dm.loader("train", batch_size=9, shuffle=False)))
    assert batch.targets["y"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 9.0]
