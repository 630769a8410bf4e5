"""The data layer (mmcore.data): sources, splits and column checks (bad rows:
test_data_rows.py; caching and loaders: test_data_loaders.py)."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest

from mmcore.data import DataModule
from mmcore.data.row_files import read_rows
from mmcore.data.sources import load_path
from mmcore.data.splits import seeded_split
from mmcore.errors import DataError
from tests import data_toy as toy
from tests.data_toy import all_rows, setup, table, write_csv


# -- sources ----------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_file_sources_with_split_column(registry, tmp_path, fmt):
    rows = table()
    path = tmp_path / f"data.{fmt}"
    if fmt == "csv":
        write_csv(path, rows)
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        datasets.Dataset.from_list(rows).to_parquet(str(path))
    dm = setup(registry, {"path": str(path), "split_column": "split"}, tmp_path)
    assert dm.splits == ["train", "validation", "test"]
    assert [dm.num_rows(s) for s in dm.splits] == [20, 5, 5]
    assert dm.head_options["label"]["classes"] == ["a", "b"]
    xs, index = all_rows(dm, "validation")
    assert xs == [20.0, 21.0, 22.0, 23.0, 24.0]
    assert index == [0, 1, 2, 3, 4]  # rows within the split


def test_read_rows_types_csv_cells_as_training_reads_them(tmp_path):
    """Rows read to predict on are the rows training reads from the same file."""
    path = tmp_path / "rows.csv"
    path.write_text('i,f,s,b,z,cells\n1,1.5,a,True,007,"[1, 2]"\n2,,b,False,010,\n'
                    ',2.5,,,1e3,[3]\n')
    rows = read_rows(path)
    trained = load_path(path, "csv", tmp_path / "cache", streaming=False).to_list()
    assert rows == trained
    assert [list(map(type, r.values())) for r in rows] == [
        list(map(type, r.values())) for r in trained]
    assert rows[0] == {"i": 1.0, "f": 1.5, "s": "a", "b": True, "z": 7.0, "cells": "[1, 2]"}
    assert rows[1]["f"] is None and rows[2]["i"] is None and rows[2]["s"] is None  # empty cells
    (tmp_path / "rows.tsv").write_text("x\tname\n3\tq\n")
    assert read_rows(tmp_path / "rows.tsv") == [{"x": 3, "name": "q"}]
    (tmp_path / "header.csv").write_text("x,name\n")
    assert read_rows(tmp_path / "header.csv") == []  # nothing to predict is not an error
    (tmp_path / "rows.jsonl").write_text('{"x": [1, 2]}\n\n{"x": null, "y": "b"}\n')
    assert read_rows(tmp_path / "rows.jsonl") == [{"x": [1, 2]}, {"x": None, "y": "b"}]
    (tmp_path / "one.json").write_text('{"x": 1}')
    assert read_rows(tmp_path / "one.json") == [{"x": 1}]


@pytest.mark.parametrize(("name", "text", "message"), [
    ("rows.jsonl", '{"x": 1}\n\n{"x": \n', r"rows.jsonl, line 3: invalid JSON"),
    ("rows.jsonl", '{"x": 1}\n[2]\n', r"rows.jsonl, row 1: expected an object, got list"),
    ("rows.json", '[{"x": 1}, 2]', r"rows.json, row 1: expected an object, got int"),
    ("rows.json", '{"x": ', r"rows.json: invalid JSON at line 1"),
    ("rows.json", '"x"', r"rows.json: expected a list of objects, got str"),
    ("rows.txt", "x",
     r"rows.txt: unknown input format '.txt'; expected .csv, .tsv, .jsonl, .ndjson or .json"),
    ("rows.csv", "", r"cannot read \S*rows.csv as csv"),
])
def test_read_rows_errors_name_the_file_and_line_or_row(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(DataError, match=message):
        read_rows(tmp_path / name)
    with pytest.raises(DataError, match=r"absent.csv: input file not found"):
        read_rows(tmp_path / "absent.csv")

def test_save_to_disk_and_dataset_objects(registry, tmp_path):
    rows = table(split=False)
    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_list(rows[:20]),
        "valid": datasets.Dataset.from_list(rows[20:]),
    })
    dd.save_to_disk(str(tmp_path / "saved"))
    dm = setup(registry, {"path": str(tmp_path / "saved")}, tmp_path)
    assert dm.splits == ["train", "validation"]
    assert all_rows(dm, "validation")[0] == [float(i) for i in range(20, 30)]

    dm = setup(registry, {"dataset": dd}, tmp_path)
    assert [dm.num_rows(s) for s in dm.splits] == [20, 10]

    # one Dataset (in memory): a seeded split; its preprocessed table is still cached on disk
    toy.NumModality.calls = 0
    dm = setup(registry, {"dataset": datasets.Dataset.from_list(rows)}, tmp_path)
    assert sum(dm.num_rows(s) for s in dm.splits) == 30
    assert toy.NumModality.calls == 30
    toy.NumModality.calls = 0
    setup(registry, {"dataset": datasets.Dataset.from_list(rows)}, tmp_path)
    assert toy.NumModality.calls == 0


def test_pandas_dataframes_as_data_dataset(registry, tmp_path):
    import pandas as pd

    rows = table(split=False)
    frame = pd.DataFrame(rows, index=[f"r{i}" for i in range(30)])  # the index is not a column
    dm = setup(registry, {"dataset": frame}, tmp_path)
    assert sum(dm.num_rows(s) for s in dm.splits) == 30
    assert "__index_level_0__" not in dm.spec.data.dataset.column_names

    # a dict of DataFrames by split, like a DatasetDict (split names normalised)
    frames = {"train": pd.DataFrame(rows[:20]), "valid": pd.DataFrame(rows[20:]).iloc[::-1]}
    dm = setup(registry, {"dataset": frames}, tmp_path)
    assert dm.splits == ["train", "validation"]
    assert [dm.num_rows(s) for s in dm.splits] == [20, 10]
    assert all_rows(dm, "validation")[0] == [float(i) for i in range(29, 19, -1)]


@pytest.mark.parametrize("value, kind", [
    ([{"x": 1.0, "label": "a"}], "a value of type list is not a table"),
    (np.zeros((3, 2)), "a value of type numpy.ndarray"),
    ({"train": "train.csv"}, "data.dataset['train']: a value of type str"),
])
def test_unsupported_data_dataset_is_refused_by_the_spec(value, kind):
    import mmcore
    from mmcore.errors import SpecError

    with pytest.raises(SpecError) as info:
        mmcore.Spec(data={"dataset": value}, modalities={"x": {"column": "x"}},
                    heads={"label": {"target": "label"}})
    message = str(info.value)
    assert "data.dataset" in message and kind in message
    assert "pandas DataFrame" in message and "datasets.Dataset" in message


def test_an_empty_given_split_and_an_empty_seeded_split_are_warnings(registry, tmp_path, capsys):
    rows = table(split=False)
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(rows),
                               "test": datasets.Dataset.from_list(rows).select([])})
    dm = setup(registry, {"dataset": dd}, tmp_path)
    assert dm.splits == ["train"]
    assert dm.split_warnings == [
        "the test split (data.dataset['test']) has no rows; it is left out"]
    assert "warning: the test split (data.dataset['test']) has no rows" in capsys.readouterr().err

    dm = setup(registry, {"dataset": datasets.Dataset.from_list(rows[:4]),
                          "split": {"validation": 0.1, "test": 0.0}}, tmp_path)
    assert dm.splits == ["train"]
    assert dm.split_warnings == [
        "no validation split: data.split.validation=0.1 of 4 rows rounds to 0 rows"]
    assert "warning: no validation split" in capsys.readouterr().err
    dm = DataModule(dm.spec, dm.modalities, registry=registry, progress=False, announce=False)
    assert dm.check() == {"train": 4}
    assert len(dm.split_warnings) == 1 and capsys.readouterr().err == ""


def test_image_and_audio_features_are_not_decoded(registry, tmp_path):
    (tmp_path / "a.png").write_bytes(b"not really a png")  # decoding it would fail
    features = datasets.Features({"x": datasets.Image(), "label": datasets.Value("string")})
    ds = datasets.Dataset.from_dict({"x": ["a.png"] * 4, "label": ["a", "b"] * 2}, features)
    dm = setup(registry, {"dataset": ds, "split": {"validation": 0, "test": 0}}, tmp_path,
               base_dir=tmp_path)
    assert all_rows(dm, "train")[0] == [16.0] * 4  # read as bytes, relative to the spec folder


@pytest.mark.parametrize("with_splits", [False, True])
def test_folder_source(registry, tmp_path, with_splits):
    root = tmp_path / "images"
    sizes = {}
    for i in range(12):
        split = ("train" if i < 8 else "test") if with_splits else ""
        label = "cat" if i % 2 else "dog"
        file = root / split / label / f"{i}.png"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(b"x" * (i + 1))
        sizes[file.relative_to(root).as_posix()] = i + 1
    (root / "README.txt").write_text("not an image")  # other files are ignored
    dm = setup(
        registry, {"path": str(root), "split": {"validation": 0.25, "test": 0.25}}, tmp_path,
        modalities={"x": {"plugin": "num", "column": "image"}},
    )
    assert dm.head_options["label"]["classes"] == ["cat", "dog"]
    assert dm.splits == (["train", "test"] if with_splits else ["train", "validation", "test"])
    got = sorted(x for s in dm.splits for x in all_rows(dm, s)[0])
    assert got == sorted(float(v) for v in sizes.values())  # files read relative to the folder


def test_folder_source_needs_label_folders(registry, tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(b"x")
    with pytest.raises(DataError, match="not inside a label folder"):
        setup(registry, {"path": str(tmp_path / "imgs"), "format": "imagefolder"}, tmp_path)


def test_relative_paths_resolve_against_data_file_and_spec(registry, tmp_path, monkeypatch):
    data_dir = tmp_path / "project" / "data"
    (data_dir / "arrays").mkdir(parents=True)
    rows = []
    for i in range(12):
        np.save(data_dir / "arrays" / f"{i}.npy", np.full(3, i, dtype=np.float32))
        rows.append({"x": f"arrays/{i}.npy", "label": i % 2, "split": "train" if i < 8 else "test"})
    write_csv(data_dir / "table.csv", rows)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working directory must not matter
    dm = setup(
        registry, {"path": "data/table.csv", "split_column": "split", "cache_dir": "cache"},
        tmp_path, base_dir=tmp_path / "project",
    )
    assert (tmp_path / "project" / "cache").is_dir()  # cache_dir resolves against the spec too
    batch = next(iter(dm.loader("test", batch_size=4, shuffle=False)))
    assert batch.inputs["x"].values.shape == (4, 3, 1)
    assert batch.inputs["x"].values[:, :, 0].tolist() == [[i] * 3 for i in range(8, 12)]
    assert dm.head_options["label"]["classes"] == [0, 1]

    # data.root overrides the folder paths resolve against
    (tmp_path / "project" / "other").mkdir()
    write_csv(tmp_path / "project" / "other" / "t.csv", rows)
    dm = setup(
        registry, {"path": "other/t.csv", "root": "data", "split_column": "split"},
        tmp_path, base_dir=tmp_path / "project",
    )
    assert dm.num_rows("train") == 8


# -- splits -------------------------------------------------------------------------------------
def test_given_files(registry, tmp_path):
    rows = table(split=False)
    write_csv(tmp_path / "tr.csv", rows[:20])
    write_csv(tmp_path / "va.csv", rows[20:25])
    write_csv(tmp_path / "te.csv", rows[25:])
    dm = setup(
        registry,
        {"train": str(tmp_path / "tr.csv"), "validation": str(tmp_path / "va.csv"),
         "test": str(tmp_path / "te.csv")},
        tmp_path,
    )
    assert [dm.num_rows(s) for s in dm.splits] == [20, 5, 5]
    assert all_rows(dm, "test")[0] == [25.0, 26.0, 27.0, 28.0, 29.0]


def test_seeded_stratified_split_keeps_class_proportions():
    labels = ["a"] * 150 + ["b"] * 40 + ["c"] * 10
    out = seeded_split(200, 0.2, 0.1, seed=3, labels=labels)
    assert sorted(np.concatenate(list(out.values())).tolist()) == list(range(200))
    assert [len(out[s]) for s in ("train", "validation", "test")] == [140, 40, 20]
    for split, frac in (("validation", 0.2), ("test", 0.1)):
        got = np.array(labels)[out[split]]
        for label, n in (("a", 150), ("b", 40), ("c", 10)):
            assert abs((got == label).sum() - n * frac) <= 1
    again = seeded_split(200, 0.2, 0.1, seed=3, labels=labels)
    assert all(np.array_equal(out[s], again[s]) for s in out)
    other = seeded_split(200, 0.2, 0.1, seed=4, labels=labels)
    assert not np.array_equal(out["validation"], other["validation"])
    # a class with one row stays in train
    tiny = seeded_split(5, 0.4, 0.0, seed=0, labels=["a", "a", "a", "a", "z"])
    assert 4 in tiny["train"]


def test_seeded_split_through_setup_is_stratified(registry, tmp_path):
    rows = [{"x": float(i), "label": "a" if i < 80 else "b"} for i in range(100)]
    write_csv(tmp_path / "d.csv", rows)
    dm = setup(
        registry, {"path": str(tmp_path / "d.csv"), "split": {"validation": 0.2, "test": 0.1}},
        tmp_path,
    )
    assert [dm.num_rows(s) for s in dm.splits] == [70, 20, 10]
    val = all_rows(dm, "validation")[0]
    assert sum(x < 80 for x in val) == 16  # 80% "a" as in the whole table


def test_split_column_with_unknown_value(registry, tmp_path):
    rows = table()
    rows[3]["split"] = "holdout"
    write_csv(tmp_path / "d.csv", rows)
    with pytest.raises(DataError, match="'holdout'"):
        setup(registry, {"path": str(tmp_path / "d.csv"), "split_column": "split"}, tmp_path)


# -- column checks -------------------------------------------------------------------------------
def test_missing_columns_are_reported_before_any_work(registry, tmp_path):
    write_csv(tmp_path / "d.csv", table())
    with pytest.raises(DataError) as info:
        setup(
            registry, {"path": str(tmp_path / "d.csv"), "split_column": "splt"}, tmp_path,
            modalities={"x": {"plugin": "num", "column": "xx"}},
            heads={"y": {"kind": "classification", "target": "lable"}},
        )
    message = str(info.value)
    for text in ("'xx' (modalities.x.column)", "'lable' (heads.y.target)",
                 "'splt' (data.split_column)", "d.csv", "Its columns are: x, label, split"):
        assert text in message
    assert toy.NumModality.calls == 0

    write_csv(tmp_path / "tr.csv", table(split=False))
    write_csv(tmp_path / "va.csv", [{"x": 1.0}])
    with pytest.raises(DataError, match=r"va.csv \(split 'validation'\) has no column 'label'"):
        setup(registry, {"train": str(tmp_path / "tr.csv"), "validation": str(tmp_path / "va.csv")},
              tmp_path)
    assert toy.NumModality.calls == 0
