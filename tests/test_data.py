"""The data layer (mmcore.data): sources, splits, checks, bad rows, caching, loaders."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

from mmcore.data import BadRow, DataModule
from mmcore.data.row_files import read_rows
from mmcore.data.sources import load_path
from mmcore.data.splits import seeded_split
from mmcore.errors import DataError
from mmcore.model import build_modalities
from tests import data_toy as toy


@pytest.fixture
def registry():
    return toy.toy_registry()


@pytest.fixture(autouse=True)
def _reset_calls():
    toy.NumModality.calls = 0


def write_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def table(n: int = 30, split: bool = True) -> list[dict]:
    names = ["train"] * (n - 10) + ["validation"] * 5 + ["test"] * 5
    rows = []
    for i in range(n):
        row = {"x": float(i), "label": "ab"[i % 2]}
        if split:
            row["split"] = names[i]
        rows.append(row)
    return rows


def setup(registry, data, tmp_path, fit=True, modalities=None, heads=None, base_dir=None, **kw):
    data = {"cache_dir": str(tmp_path / "cache"), **data}
    spec = toy.make_spec(registry, data, modalities, heads, base_dir=base_dir)
    dm = DataModule(spec, build_modalities(spec, registry), registry=registry, progress=False, **kw)
    dm.setup(fit=fit)
    return dm


def all_rows(dm: DataModule, split: str) -> tuple[list[float], list[int]]:
    """x values (first step) and split row indices of a split, in order."""
    xs, index = [], []
    for batch in dm.loader(split, batch_size=7, shuffle=False):
        xs += batch.inputs["x"].values[:, 0, 0].tolist()
        index += batch.index.tolist()
    return xs, index


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


# -- missing modalities and bad rows --------------------------------------------------------------
def two_modality_rows() -> list[dict]:
    rows = [
        {"x": float(i), "y": float(i), "label": "ab"[i % 2], "split": "train"} for i in range(10)
    ]
    rows[3]["y"] = None  # lacks y
    rows[5]["x"] = None
    rows[5]["y"] = None  # lacks both
    return rows


TWO = {"x": {"plugin": "num", "column": "x"}, "y": {"plugin": "num", "column": "y"}}


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
