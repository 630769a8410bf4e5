"""The model card: ``README.md`` in a run folder (data, splits, the data's licence, metrics with
the modality report, the model, versions, intended use), reset by ``--overwrite`` but never a
README of the user's, refreshed by ``mmcore evaluate``, and copied into an export bundle where
the manifest's checksums cover it."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from mmcore.cli import main
from mmcore.run.card import (
    EVALUATION_KEY,
    EVALUATIONS,
    INTENDED_USE,
    MARKER,
    add_evaluation,
    evaluation_block,
    render_card,
)
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
    assert "- licence: not stated (set `data.license`" in card
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
    from mmcore.inference import runtime
    from mmcore.inference.export import export_run
    from mmcore.inference.export.manifest import file_sha256

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


def test_the_data_licence_from_the_spec_is_on_the_card(tmp_path):
    data = toy.write_data(tmp_path / "data.csv")
    spec = toy.write_spec(tmp_path / "spec.py",
                          toy.spec_dict(data, tmp_path / "cache", epochs=1, callbacks=[]))
    run = tmp_path / "run"
    assert main(["train", str(spec), "--output", str(run), "--quiet",
                 "data.license=CC-BY-4.0"]) == 0
    assert json.loads((run / "spec.json").read_text())["data"]["license"] == "CC-BY-4.0"
    card = (run / "README.md").read_text()
    assert "\n- licence: CC-BY-4.0\n" in card and "not stated" not in card
    # a licence stated later is no reason to refuse a resume (only the card reads it)
    assert main(["train", str(spec), "--output", str(run), "--quiet", "--resume",
                 "train.epochs=2", "data.license=MIT"]) == 0
    assert "\n- licence: MIT\n" in (run / "README.md").read_text()


def _section(card: str, title: str) -> str:
    """The lines of ``## title`` up to the next ``## `` heading."""
    start = card.index(f"\n## {title}\n")
    end = card.find("\n## ", start + 1)
    return card[start:] if end < 0 else card[start:end]


def test_evaluate_adds_its_figures_to_the_card_and_keeps_the_rest(run, tmp_path, capsys):
    trained = (run / "README.md").read_text()
    # a person replaces the placeholder: evaluating keeps their words
    (run / "README.md").write_text(trained.replace(INTENDED_USE, "Only for the toy tests."))
    assert main(["evaluate", str(run), "--no-report"]) == 0
    assert f"model card updated: {run / 'README.md'}" in capsys.readouterr().out
    card = (run / "README.md").read_text()
    assert "Only for the toy tests." in card and INTENDED_USE not in card
    for title in ("Data", "Metrics", "Model", "Versions"):  # training's sections, unchanged
        assert _section(card, title) == _section(trained, title)
    assert card.index("## Metrics") < card.index(EVALUATIONS) < card.index("## Model")
    evaluations = _section(card, "Evaluations")
    assert "### The test split, 12 rows\n" + EVALUATION_KEY.format("split test") in evaluations
    assert "UTC by `mmcore evaluate`." in evaluations
    metrics = json.loads((run / "metrics.json").read_text())["test"]
    assert f"| label.accuracy | {metrics['label.accuracy']:.4f} |" in evaluations

    # another split is added beside it, with its modality report; the same split is replaced
    assert main(["evaluate", str(run), "--split", "validation"]) == 0
    data = tmp_path / "data.csv"
    assert main(["evaluate", str(run), "--data", str(data), "--no-report",
                 "data.bad_rows=skip"]) == 0
    assert main(["evaluate", str(run), "--split", "test", "--no-report"]) == 0
    evaluations = _section((run / "README.md").read_text(), "Evaluations")
    assert evaluations.count("### ") == 3
    assert evaluations.count(EVALUATION_KEY.format("split test")) == 1
    validation = evaluations[evaluations.index("### The validation split, 12 rows"):]
    assert "What each modality contributes (label.accuracy)" in validation
    assert "\n| (all) | " in validation
    assert f"### The data file `{data.resolve()}`, 60 rows" in evaluations
    assert "with `data.bad_rows=skip`." in evaluations
    # the run folder's other files are what they were
    assert _section((run / "README.md").read_text(), "Model") == _section(trained, "Model")


def test_evaluate_leaves_a_readme_of_the_users_alone_and_makes_a_missing_card(run, capsys):
    (run / "README.md").write_text("# my notes\n")
    assert main(["evaluate", str(run), "--no-report"]) == 0
    assert (run / "README.md").read_text() == "# my notes\n"
    assert "model card updated" not in capsys.readouterr().out
    (run / "README.md").unlink()
    assert main(["evaluate", str(run), "--no-report", "--json"]) == 0
    json.loads(capsys.readouterr().out)  # --json prints the figures alone
    card = (run / "README.md").read_text()
    assert card.startswith(MARKER) and "## Metrics" in card
    assert EVALUATION_KEY.format("split test") in _section(card, "Evaluations")


def test_an_evaluation_block_says_what_when_and_how():
    when = datetime(2026, 12, 6, 11, 30, tzinfo=timezone.utc)
    result = {"split": "test", "rows": 5, "metrics": {"y.mae": 0.25, "loss": 0.5}}
    report = {"split": "test", "monitor": "y.mae", "baseline": {"y.mae": 0.25},
              "modalities": {"a": {"without": {"y.mae": 0.75}, "only": {"y.mae": 0.25}}}}
    key, block = evaluation_block(result, report, overrides=["data.allow_missing=true"],
                                  when=when)
    assert key == "split test"
    text = "\n".join(block)
    assert text.startswith("### The test split, 5 rows\n")
    assert ("Evaluated 2026-12-06 11:30 UTC by `mmcore evaluate` with "
            "`data.allow_missing=true`.") in text
    assert "| y.mae | 0.2500 |" in text and "| a | 0.7500 | +0.5000 | 0.2500 |" in text
    # a card without a Model section gets the section at its end; a second key goes after
    card = add_evaluation(MARKER + "\n# m\n\n## Metrics\n\nnone\n", key, block)
    assert card.index("## Metrics") < card.index(EVALUATIONS)
    other_key, other = evaluation_block({"split": "validation", "rows": 2, "metrics": {}},
                                        when=when)
    twice = add_evaluation(add_evaluation(card, other_key, other), key, block)
    assert twice.index("### The test split") < twice.index("### The validation split")
    assert twice.count("### The test split") == 1 and twice.endswith("\n")
