"""The set-up record (mmcore.data.split_record): a warm set-up memory-maps what the last one
made, equal to it, without reading a row or importing ``datasets``; anything the record's
results depend on changing, or a file it names going, means a full set-up."""

from __future__ import annotations

import csv
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mmcore
from mmcore.data import DataModule, split_sources
from mmcore.data.loader import ArrowSplit
from mmcore.model import build_modalities
from mmcore.plugins.discovery import new_plugin_manager
from mmcore.plugins.registry import Registry
from tests import data_toy as toy

REPO = Path(__file__).resolve().parents[1]


class Saved(toy.NumModality):
    """NumModality whose fitted mean is saved and loaded (so its fit can be cached)."""

    def save_state(self, directory: Path) -> None:
        (directory / "mean.json").write_text(json.dumps({"mean": self.mean}))

    def load_state(self, directory: Path) -> None:
        self.mean = json.loads((directory / "mean.json").read_text())["mean"]


class Plugin:
    @mmcore.hookimpl
    def register_modalities(self, register):
        register("saved", Saved, toy.NumOptions, "numbers with saved state")
        register("num", toy.NumModality, toy.NumOptions, "numbers, state in memory only")


def registry() -> Registry:
    pm = new_plugin_manager()
    pm.register(Plugin(), name="recordplugin")
    return Registry(pm)


def write_csv(path: Path, n: int = 40, bad: tuple[int, ...] = (), offset: float = 0.0) -> Path:
    names = ["train"] * (n - 12) + ["validation"] * 6 + ["test"] * 6
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["x", "label", "split"])
        for i in range(n):
            writer.writerow(["" if i in bad else float(i) + offset, "abc"[i % 3], names[i]])
    return path


def data_module(path: Path, cache: Path, plugin: str = "saved", output: Path | None = None,
                scale: float = 1.0, weights: str | None = "balanced", **data) -> DataModule:
    reg = registry()
    spec = toy.make_spec(
        reg, {"path": str(path), "split_column": "split", "cache_dir": str(cache), **data},
        {"x": {"plugin": plugin, "column": "x", "options": {"center": True, "scale": scale}}},
        {"label": {"kind": "classification", "target": "label",
                   "options": {"class_weights": weights}}},
    )
    return DataModule(spec, build_modalities(spec, reg), registry=reg, progress=False,
                      output_dir=output)


def batches(dm: DataModule, split: str) -> list[tuple[list, list, list]]:
    return [(b.inputs["x"].values[:, 0, 0].tolist(), b.targets["label"].tolist(),
             b.index.tolist()) for b in dm.loader(split, batch_size=8, shuffle=False)]


def no_reading(monkeypatch) -> None:
    """Reading the sources (the full set-up's first step) fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("the sources were read")

    monkeypatch.setattr(split_sources, "load_splits", refuse)
    monkeypatch.setattr("mmcore.data.module.load_splits", refuse)


def test_a_warm_set_up_is_the_recorded_one(tmp_path, monkeypatch, capsys):
    path, cache = write_csv(tmp_path / "d.csv", bad=(3, 30)), tmp_path / "cache"
    cold = data_module(path, cache, bad_rows="skip", output=tmp_path / "cold")
    cold.setup()
    cold_err = capsys.readouterr().err
    assert len(list(cache.glob("mmcore-setup-*.json"))) == 1

    no_reading(monkeypatch)
    warm = data_module(path, cache, bad_rows="skip", output=tmp_path / "warm")
    warm.setup()
    assert capsys.readouterr().err == cold_err  # the same skipped-rows summary
    assert warm.splits == cold.splits == ["train", "validation", "test"]
    assert warm.head_options == cold.head_options
    assert warm.head_options["label"]["classes"] == ["a", "b", "c"]
    assert warm.bad_rows == cold.bad_rows and [b.row for b in warm.bad_rows] == [3, 2]
    assert (tmp_path / "warm" / "bad_rows.json").read_text() == \
        (tmp_path / "cold" / "bad_rows.json").read_text()
    assert warm.modalities["x"].mean == cold.modalities["x"].mean
    assert warm.modalities["x"].fingerprint() == cold.modalities["x"].fingerprint()
    for split in cold.splits:
        assert warm.num_rows(split) == cold.num_rows(split)
        assert batches(warm, split) == batches(cold, split)
    assert warm.class_codes("train").tolist() == cold.class_codes("train").tolist()


@pytest.mark.parametrize("change", ["file", "modality", "head", "data", "cache file"])
def test_what_the_results_depend_on_changing_sets_up_in_full(tmp_path, change):
    path, cache = write_csv(tmp_path / "d.csv"), tmp_path / "cache"
    data_module(path, cache).setup()
    options: dict = {}
    if change == "file":
        write_csv(path, offset=100.0)
        os.utime(path, ns=(1, 1))  # a new size and modification time
    elif change == "cache file":
        for arrow in cache.glob("mmcore-*.arrow"):
            arrow.unlink()
    else:
        options = {"modality": {"scale": 2.0}, "head": {"weights": None},
                   "data": {"split": {"seed": 1}}}[change]
    dm = data_module(path, cache, **options)
    reads = []
    original = split_sources.load_splits

    def counted(*args, **kwargs):
        reads.append(1)
        return original(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("mmcore.data.module.load_splits", counted)
        dm.setup()
    assert reads == [1]
    if change == "file":
        assert dm.modalities["x"].mean == pytest.approx(113.5)


def test_a_damaged_fitted_state_sets_up_in_full(tmp_path):
    path, cache = write_csv(tmp_path / "d.csv"), tmp_path / "cache"
    data_module(path, cache).setup()
    (entry,) = cache.glob("mmcore-fit-*")
    (entry / "mean.json").write_text("{not json")
    dm = data_module(path, cache)
    dm.setup()
    assert dm.modalities["x"].mean == pytest.approx(13.5)  # fitted again


@pytest.mark.parametrize("how", ["state in memory only", "streamed"])
def test_set_ups_the_record_cannot_give_back_are_not_recorded(tmp_path, how):
    path, cache = write_csv(tmp_path / "d.csv"), tmp_path / "cache"
    if how == "streamed":
        data_module(path, cache, streaming=True).setup()
    else:
        data_module(path, cache, plugin="num").setup()
    assert not list(cache.glob("mmcore-setup-*"))


def test_a_split_is_pickled_as_its_files(tmp_path):
    # a spawned DataLoader worker memory-maps the cache again instead of receiving its rows
    path, cache = write_csv(tmp_path / "d.csv", bad=(5,)), tmp_path / "cache"
    dm = data_module(path, cache, bad_rows="skip")
    dm.setup()
    split = dm.store("train").table()
    assert split.files and all(Path(f).is_file() for f in split.files)
    assert split.__getstate__()["table"] is None  # the file names, not the rows
    copy = pickle.loads(pickle.dumps(split))
    positions = list(range(len(split)))
    assert copy.read(positions).equals(split.read(positions))
    in_memory = ArrowSplit(split.table.select(["_row"]), np.array([2, 0]))
    assert pickle.loads(pickle.dumps(in_memory)).read([0, 1]).column("_row").to_pylist() == \
        in_memory.read([0, 1]).column("_row").to_pylist()


def test_a_warm_set_up_imports_no_datasets(tmp_path):
    path, cache = write_csv(tmp_path / "d.csv"), tmp_path / "cache"
    data_module(path, cache).setup()
    code = (
        "import sys\n"
        "from tests.test_data_record import data_module\n"
        "from pathlib import Path\n"
        f"dm = data_module(Path({str(path)!r}), Path({str(cache)!r}))\n"
        "dm.setup()\n"
        "print(dm.num_rows('train'), 'datasets' in sys.modules, 'pandas' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, check=False,
                          env={**os.environ, "HF_DATASETS_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["28", "False", "False"]
