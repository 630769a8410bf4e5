"""The data root: the one rule for the folder relative file paths in the data resolve
against (:func:`mmcore.spec.roots.data_root`), and the callers that use it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmcore.data.split_sources import file_split
from mmcore.model import build_modalities
from mmcore.run.layout import RunFolder, load_run_spec, save_spec
from mmcore.spec.roots import base_dir, data_root
from tests import data_toy as toy


def _spec(registry, tmp_path, **data):
    data.setdefault("split_column", "split")
    return toy.make_spec(registry, data, base_dir=tmp_path / "project")


def _table(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x,label,split\n1,a,train\n2,b,train\n")
    return path


def test_the_tables_folder_by_default(registry, tmp_path):
    _table(tmp_path / "project" / "data" / "rows.csv")
    spec = _spec(registry, tmp_path, path="data/rows.csv")
    assert base_dir(spec) == tmp_path / "project"
    assert data_root(spec) == tmp_path / "project" / "data"
    # a table in another folder: that folder, relative to the spec's folder or absolute
    other = _table(tmp_path / "elsewhere" / "test.csv")
    assert data_root(spec, "../elsewhere/test.csv").resolve() == other.parent
    assert data_root(spec, other) == other.parent
    # a folder is its own root (save_to_disk, image folders)
    assert data_root(spec, other.parent) == other.parent


def test_data_root_wins_relative_or_absolute(registry, tmp_path, monkeypatch):
    _table(tmp_path / "project" / "rows.csv")
    relative = _spec(registry, tmp_path, path="rows.csv", root="media")
    assert data_root(relative) == tmp_path / "project" / "media"
    assert data_root(relative, tmp_path / "elsewhere" / "t.csv") == tmp_path / "project" / "media"
    absolute = _spec(registry, tmp_path, path="rows.csv", root=str(tmp_path / "abs"))
    assert data_root(absolute) == tmp_path / "abs"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    home = _spec(registry, tmp_path, path="rows.csv", root="~/media")
    assert data_root(home) == tmp_path / "home" / "media"


def test_split_files_and_a_table_on_its_own(registry, tmp_path):
    train = _table(tmp_path / "project" / "train" / "rows.csv")
    spec = toy.make_spec(registry, {"train": "train/rows.csv"}, base_dir=tmp_path / "project")
    assert data_root(spec) == train.parent
    # no spec: the table's folder, relative to the working directory
    assert data_root(None, train) == train.parent
    assert data_root(None) is None


def test_a_dataset_object_resolves_against_the_spec_folder(registry, tmp_path):
    datasets = pytest.importorskip("datasets")
    table = datasets.Dataset.from_dict({"x": [1.0, 2.0], "label": ["a", "b"]})
    spec = toy.make_spec(registry, {"dataset": table}, base_dir=tmp_path)
    assert data_root(spec) == tmp_path


def test_every_caller_agrees(registry, tmp_path):
    """build_modalities, the split sources and a file read for evaluation all root alike."""
    _table(tmp_path / "project" / "data" / "rows.csv")
    spec = _spec(registry, tmp_path, path="data/rows.csv")
    modalities = build_modalities(spec, registry)
    assert {m.root for m in modalities.values()} == {tmp_path / "project" / "data"}
    other = _table(tmp_path / "elsewhere" / "eval.csv")
    assert file_split(spec, other).root == other.parent
    rooted = _spec(registry, tmp_path, path="data/rows.csv", root="media")
    assert {m.root for m in build_modalities(rooted, registry).values()} == {
        tmp_path / "project" / "media"}
    # data.root does not apply to a file named on its own (mmcore evaluate --data FILE)
    assert file_split(rooted, other).root == other.parent


def test_a_loaded_run_folder_keeps_the_training_root(registry, tmp_path):
    """spec.json keeps the data paths absolute, so the run folder (its base) moves nothing."""
    data = _table(tmp_path / "project" / "data" / "rows.csv")
    for extra, expected in (({}, data.parent), ({"root": "media"}, tmp_path / "project" / "media")):
        spec = _spec(registry, tmp_path, path="data/rows.csv", **extra)
        run = RunFolder(tmp_path / f"run{len(extra)}")
        run.path.mkdir()
        save_spec(run, spec)
        loaded = load_run_spec(run)
        assert base_dir(loaded) == run.path
        assert data_root(loaded) == data_root(spec) == expected


def test_a_spec_loaded_by_a_relative_path_roots_its_data_once(registry, tmp_path, monkeypatch):
    """``mmcore train examples/x/spec.py`` (a relative spec path, so a relative spec folder)
    with a table in another folder: every caller roots the table's files in that folder, not
    in the spec's folder joined twice (the split sources resolved the table, then rooted it
    against the spec's folder again: 'examples/x/examples/x/../data/images/...')."""
    from mmcore.data.split_sources import load_splits

    table = _table(tmp_path / "elsewhere" / "rows.csv")
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path)
    spec = toy.make_spec(registry, {"path": "../elsewhere/rows.csv", "split_column": "split"},
                         base_dir=Path("project"))
    sources, _ = load_splits(spec, {}, None)
    assert {s.root.resolve() for s in sources.values()} == {table.parent}
    assert {m.root.resolve() for m in build_modalities(spec, registry).values()} == {table.parent}
    assert base_dir(spec) == tmp_path / "project"
