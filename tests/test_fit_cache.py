"""Fitted modality state cached beside the preprocessed tables (mmcore.data.fit_cache)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import mmcore
from mmcore.data import DataModule, fit_cache
from mmcore.model import build_modalities
from mmcore.plugins.discovery import new_plugin_manager
from mmcore.plugins.registry import Registry
from tests import data_toy as toy


class SavedNum(toy.NumModality):
    """NumModality whose fitted mean is saved and loaded; counts its fits."""

    fits = 0

    def fit(self, values) -> None:
        type(self).fits += 1
        super().fit(values)

    def save_state(self, directory: Path) -> None:
        (directory / "mean.json").write_text(json.dumps({"mean": self.mean}))

    def load_state(self, directory: Path) -> None:
        self.mean = json.loads((directory / "mean.json").read_text())["mean"]


class Plugin:
    @mmcore.hookimpl
    def register_modalities(self, register):
        register("num", toy.NumModality, toy.NumOptions, "numbers, state in memory only")
        register("saved", SavedNum, toy.NumOptions, "numbers with saved state")


@pytest.fixture
def registry() -> Registry:
    pm = new_plugin_manager()
    pm.register(Plugin(), name="fitcacheplugin")
    SavedNum.fits = 0
    return Registry(pm)


def _csv(path: Path, n: int = 30, offset: float = 0.0) -> Path:
    names = ["train"] * (n - 10) + ["validation"] * 5 + ["test"] * 5
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["x", "label", "split"])
        for i in range(n):
            writer.writerow([float(i) + offset, "ab"[i % 2], names[i]])
    return path


def _setup(registry, path: Path, cache: Path, plugin: str = "saved", center: bool = True):
    data = {"path": str(path), "split_column": "split", "cache_dir": str(cache)}
    modalities = {"x": {"plugin": plugin, "column": "x", "options": {"center": center}}}
    spec = toy.make_spec(registry, data, modalities)
    dm = DataModule(spec, build_modalities(spec, registry), registry=registry, progress=False)
    dm.setup(fit=True)
    return dm


def _train_x(dm: DataModule) -> list[float]:
    batch = next(iter(dm.loader("train", batch_size=4, shuffle=False)))
    return batch.inputs["x"].values[:, 0, 0].tolist()


def test_a_warm_cache_loads_the_fit_instead_of_fitting_again(registry, tmp_path):
    path, cache = _csv(tmp_path / "d.csv"), tmp_path / "cache"
    first = _setup(registry, path, cache)
    assert SavedNum.fits == 1 and first.modalities["x"].mean == pytest.approx(9.5)
    assert len(list(cache.glob("mmcore-fit-*/FITTED"))) == 1

    second = _setup(registry, path, cache)
    assert SavedNum.fits == 1  # loaded, not fitted
    assert second.modalities["x"].mean == pytest.approx(9.5)
    assert _train_x(second) == _train_x(first) == [-9.5, -8.5, -7.5, -6.5]


def test_other_rows_or_options_fit_again(registry, tmp_path):
    cache = tmp_path / "cache"
    _setup(registry, _csv(tmp_path / "d.csv"), cache)
    moved = _setup(registry, _csv(tmp_path / "e.csv", offset=100.0), cache)
    assert SavedNum.fits == 2 and moved.modalities["x"].mean == pytest.approx(109.5)
    _setup(registry, tmp_path / "d.csv", cache, center=False)
    assert SavedNum.fits == 3


def test_a_damaged_cache_entry_costs_a_fit_not_a_wrong_model(registry, tmp_path):
    path, cache = _csv(tmp_path / "d.csv"), tmp_path / "cache"
    _setup(registry, path, cache)
    (entry,) = cache.glob("mmcore-fit-*")
    (entry / "mean.json").write_text("{not json")
    dm = _setup(registry, path, cache)
    assert SavedNum.fits == 2 and dm.modalities["x"].mean == pytest.approx(9.5)
    assert json.loads((entry / "mean.json").read_text()) == {"mean": 9.5}  # replaced


def test_state_kept_only_in_memory_is_always_fitted(registry, tmp_path):
    path, cache = _csv(tmp_path / "d.csv"), tmp_path / "cache"
    _setup(registry, path, cache, plugin="num")
    dm = _setup(registry, path, cache, plugin="num")
    assert dm.modalities["x"].fitted_on is not None  # fitted both times
    assert not list(cache.glob("mmcore-fit-*"))
    assert np.isclose(dm.modalities["x"].mean, 9.5)


def test_a_modality_can_opt_out_of_the_fit_cache(registry, tmp_path):
    path, cache = _csv(tmp_path / "d.csv"), tmp_path / "cache"
    SavedNum.cache_fit = False
    try:
        _setup(registry, path, cache)
        _setup(registry, path, cache)
    finally:
        del SavedNum.cache_fit
    assert SavedNum.fits == 2 and not list(cache.glob("mmcore-fit-*"))


def test_a_new_run_copies_the_cached_fit_instead_of_saving_it_again(registry, tmp_path,
                                                                    monkeypatch):
    """The run folder gets the files of the fit cache's folder (what ``save_state`` wrote there,
    not encoded again: a MiniRocket state is 30,000 floats of JSON), from a cold set-up (the
    fit stored), a warm one (the set-up's record) and one whose record is gone (the fit cache
    alone); a fit the cache cannot keep is saved as before."""
    from mmcore.run.layout import RunFolder
    from mmcore.train.run_data import set_up_data

    saves = []
    save_state = SavedNum.save_state
    monkeypatch.setattr(SavedNum, "save_state",
                        lambda self, d: (saves.append(Path(d)), save_state(self, d)))
    path, cache = _csv(tmp_path / "d.csv"), tmp_path / "cache"
    data = {"path": str(path), "split_column": "split", "cache_dir": str(cache)}
    modalities = {"x": {"plugin": "saved", "column": "x", "options": {"center": True}}}
    spec = toy.make_spec(registry, data, modalities)

    def new_run(name: str) -> tuple[DataModule, Path]:
        run = RunFolder(tmp_path / name)
        dm, _ = set_up_data(spec, build_modalities(spec, registry), run, registry,
                            from_run=False, writer=True, progress=False)
        return dm, run.modality_dir("x")

    dm, folder = new_run("cold")
    (entry,) = cache.glob("mmcore-fit-*")
    assert dm.fitted_states["x"].folder == entry
    assert [p.parent for p in saves] == [cache]  # into the cache only
    assert sorted(p.name for p in folder.iterdir()) == ["mean.json"]  # no cache marker
    assert (folder / "mean.json").read_bytes() == (entry / "mean.json").read_bytes()

    dm, folder = new_run("warm")  # from the set-up's record
    assert SavedNum.fits == 1 and len(saves) == 1 and dm.fitted_states["x"].folder == entry
    assert json.loads((folder / "mean.json").read_text()) == {"mean": 9.5}

    (record,) = cache.glob("mmcore-setup-*.json")
    record.unlink()
    dm, folder = new_run("no-record")  # the fit cache alone
    assert SavedNum.fits == 1 and len(saves) == 1 and dm.fitted_states["x"].folder == entry
    assert json.loads((folder / "mean.json").read_text()) == {"mean": 9.5}
    assert list(cache.glob("mmcore-setup-*.json"))  # recorded again

    (entry / "mean.json").chmod(0o444)  # a read-only cache: its modes are not copied
    out = tmp_path / "from-read-only"
    out.mkdir()
    assert fit_cache.copy_state(dm.fitted_states["x"], out)
    assert (out / "mean.json").stat().st_mode & 0o200
    (entry / "mean.json").chmod(0o644)

    # another process's fit replaced the cache's meanwhile: saved, not copied
    (entry / "mean.json").write_text(json.dumps({"mean": -1.0}))
    (entry / fit_cache.MARKER).write_text("another store\n")
    dm.modalities["x"].mean = 9.5
    out = tmp_path / "replaced"
    out.mkdir()
    assert not fit_cache.copy_state(dm.fitted_states["x"], out)
    assert list(out.iterdir()) == []  # nothing half copied left behind

    monkeypatch.setattr("mmcore.data.fit_cache.store_fitted", lambda *args: None)
    spec = toy.make_spec(registry, {**data, "cache_dir": str(tmp_path / "other")}, modalities)
    dm, folder = new_run("unkept")  # fitted, and the cache could not keep it
    assert SavedNum.fits == 2 and dm.fitted_states == {} and saves[-1] == folder
    assert json.loads((folder / "mean.json").read_text()) == {"mean": 9.5}
