"""The data layer on real data: av_digits' pairs.csv, whose file paths are relative to it."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from mmcore.data import DataModule
from mmcore.model import build_modalities
from mmcore.testing import shared_data
from tests import data_toy as toy


@pytest.fixture
def av_digits() -> Path:
    return shared_data("av_digits", "pairs.csv", anchor=__file__).parent


def test_av_digits_paths_resolve_against_the_csv(av_digits, tmp_path, monkeypatch):
    with (av_digits / "pairs.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        takes = {"0", "5", "10", "11", "12", "13"}  # test, validation, train
        rows = [r for r in reader if r["speaker"] == "george" and r["take"] in takes]
    copy = tmp_path / "copy"
    assert len(rows) == 60 and {row["split"] for row in rows} == {"train", "validation", "test"}
    for row in rows:
        for column in ("image", "audio"):
            (copy / row[column]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(av_digits / row[column], copy / row[column])
    with (copy / "pairs.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    monkeypatch.chdir(tmp_path)  # not the csv's folder: paths must resolve against the csv

    registry = toy.toy_registry()
    spec = toy.make_spec(
        registry,
        {"path": "copy/pairs.csv", "split_column": "split", "cache_dir": str(tmp_path / "cache")},
        modalities={"image": {"plugin": "num", "column": "image"},
                    "audio": {"plugin": "num", "column": "audio"}},
        base_dir=tmp_path,
    )
    dm = DataModule(spec, build_modalities(spec, registry), registry=registry, progress=False)
    dm.setup()
    assert dm.head_options["label"]["classes"] == list(range(10))
    assert sum(dm.num_rows(s) for s in dm.splits) == 60
    by_split = {s: [r for r in rows if r["split"] == s] for s in dm.splits}
    for split in dm.splits:
        for batch in dm.loader(split, batch_size=16, shuffle=False):
            for i, row_index in enumerate(batch.index.tolist()):
                row = by_split[split][row_index]
                assert batch.inputs["image"].values[i, 0, 0] == (copy / row["image"]).stat().st_size
                assert batch.inputs["audio"].values[i, 0, 0] == (copy / row["audio"]).stat().st_size
                assert batch.targets["label"][i] == int(row["label"])
