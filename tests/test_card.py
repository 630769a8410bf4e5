"""The model card: ``README.md`` in a run folder (data, splits, metrics with the modality
report, the model, versions, intended use), reset by ``--overwrite`` but never a README of the
user's, and copied into an export bundle where the manifest's checksums cover it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmcore.cli import main
from mmcore.run.card import INTENDED_USE, MARKER, render_card
from mmcore.version import __version__
from tests import train_toy as toy


@pytest.fixture(autouse=True)
def toy_plugins():
    with toy.process_registry():
        yield


@pytest.fixture
def run(tmp_path) -> Path:
    data = toy.write_data(tmp_path / "data.csv")
    spec = toy.write_spec(tmp_path / "spec.py",
                          toy.spec_dict(data, tmp_path / "cache", epochs=2, callbacks=[]))
    run = tmp_path / "run"
    assert main(["train", str(spec), "--output", str(run), "--quiet"]) == 0
    return run


def test_a_trained_run_folder_has_a_card_people_can_read(run, tmp_path):
    card = (run / "README.md").read_text()
    assert card.startswith(MARKER + "\n# tiny\n")
    assert INTENDED_USE in card
    assert f"- source: `{tmp_path / 'data.csv'}`" in card
    assert "- splits from the column `split`" in card
    assert "licence: not recorded" in card
    # 60 rows, 60/20/20 by the split column
    assert "| train | 36 |" in card and "| validation | 12 |" in card and "| test | 12 |" in card
    final = json.loads((run / "metrics.json").read_text())
    assert f"Best epoch {final['best_epoch']} of 2 by label.accuracy" in card
    accuracy = (f"| label.accuracy | {final['validation']['label.accuracy']:.4f} | "
                f"{final['test']['label.accuracy']:.4f} |")
    assert accuracy in card
    assert "(test split, label.accuracy)" in card and "\n| (all) | " in card
    assert "| a | scaled | x | ToyEncoder (" in card and "| b | slowtoy | z |" in card
    assert "Fusion: `concat`" in card
    assert "| label | classification | y | 3 |" in card
    assert "Training: epochs=2, batch_size=8, lr=0.05, optimizer=adamw" in card
    assert f"- mmcore {__version__}" in card and f"- {toy.DIST} {toy.VERSION}" in card


def test_overwrite_rewrites_the_card_and_a_readme_of_the_users_is_left_alone(run, tmp_path):
    spec = tmp_path / "spec.py"
    (run / "README.md").write_text(MARKER + "\nstale\n")
    assert main(["train", str(spec), "--output", str(run), "--quiet", "--overwrite"]) == 0
    assert "stale" not in (run / "README.md").read_text()
    (run / "README.md").write_text("# my notes\n")
    assert main(["train", str(spec), "--output", str(run), "--quiet", "--overwrite"]) == 0
    assert (run / "README.md").read_text() == "# my notes\n"


def test_an_in_memory_dataset_and_a_run_without_test_say_so():
    spec = {"name": "m", "data": {"path": None, "train": None},
            "modalities": {"a": {"plugin": "toy", "column": "x", "options": {}}},
            "fusion": {"name": "concat", "options": {}},
            "heads": {"y": {"kind": "regression", "target": "y", "options": {}}},
            "train": {"epochs": 1}, "plugins": {}}
    final = {"best_epoch": 1, "epochs": 1, "monitor": "y.mae", "best_value": 0.5,
             "validation": {"y.mae": 0.5}}
    card = render_card(spec, final, None, {"train": 8, "validation": 2}, mmcore_version="9")
    assert "in-memory dataset" in card and "| validation | 2 |" in card
    assert "The test split was not evaluated" in card and "- mmcore 9" in card


def test_an_export_bundle_has_the_card_covered_by_its_checksums(run, tmp_path):
    pytest.importorskip("onnxruntime", reason="export needs mmcore-torch[export]")
    pytest.importorskip("onnxscript", reason="export needs mmcore-torch[export]")
    from mmcore import runtime
    from mmcore.export import export_run
    from mmcore.export.manifest import file_sha256

    bundle = export_run(run, tmp_path / "bundle")
    card = (bundle / "README.md").read_text()
    assert card.startswith((run / "README.md").read_text().rstrip("\n"))
    assert "## This bundle" in card and "`model.onnx` (onnx)" in card
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["files"]["README.md"] == file_sha256(bundle / "README.md")
    runtime.load(bundle)  # checks every file against the manifest
    (bundle / "README.md").write_text(card + "edited\n")
    with pytest.raises(Exception, match="README.md"):
        runtime.load(bundle)
