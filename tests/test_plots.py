"""A run's pictures cost it nothing until someone wants them: the final evaluation keeps the
confusion matrices (``confusion.json``) beside ``metrics.jsonl``, and ``mmcore plots RUN``
draws the PNGs from the folder at any time, as the ``plots`` callback does at the end of
``fit()`` when it is on."""

from __future__ import annotations

import importlib.util
import json
import sys
from types import SimpleNamespace

import pytest
import torch

from mmcore.cli import main
from mmcore.evaluate.split import SplitResult
from mmcore.metrics import confusion_matrix
from mmcore.train import Trainer
from mmcore.train.callbacks.plots import Plots
from mmcore.train.plots import (
    CONFUSION,
    CURVES,
    MISSING_NOTE,
    PlotsUnavailable,
    confusion_matrices,
    draw_run,
)
from tests import train_toy as toy

pytestmark = pytest.mark.usefixtures("one_thread")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_without_plots(tmp_path_factory):
    """A toy run trained with the plots switched off (as tune trials and benchmarks do)."""
    root = tmp_path_factory.mktemp("plots")
    data = toy.write_data(root / "data.csv")
    spec = toy.spec_dict(data, root / "cache", epochs=2, callbacks=[])
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # no plots argument: a run made from Python draws nothing unless asked (tested below)
        trainer = Trainer(spec, output=root / "run", registry=toy.registry(),
                          report=False, summary=False, quiet=True)
        trainer.fit()
    finally:
        torch.set_num_threads(before)
    return trainer


def test_a_run_without_plots_keeps_its_confusion_matrices_and_draws_nothing(
        run_without_plots):
    trainer = run_without_plots
    run = trainer.run.path
    assert not list(run.glob("*.png"))
    kept = json.loads((run / CONFUSION).read_text())
    test = trainer.final_results["test"]
    expected = confusion_matrix(test.outputs["label"].argmax(-1), test.targets["label"], 3)
    assert kept == {"split": "test", "heads": {"label": {
        "classes": toy.CLASSES, "counts": expected.tolist()}}}
    assert sum(map(sum, kept["heads"]["label"]["counts"])) == test.rows


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="needs matplotlib")
def test_mmcore_plots_draws_a_finished_run_from_its_folder(run_without_plots, capsys):
    run = run_without_plots.run.path
    assert main(["plots", str(run)]) == 0
    drawn = [run / CURVES, run / "confusion_label.png"]
    assert capsys.readouterr().out.split() == [str(p) for p in drawn]
    for path in drawn:
        assert path.read_bytes().startswith(PNG)
        path.unlink()


def test_an_unfinished_runs_folder_gets_its_curves_and_no_stale_confusion(tmp_path):
    pytest.importorskip("matplotlib")
    records = [{"epoch": e, "train/loss": 1.0 / e, "validation/loss": 1.2 / e,
                "validation/label.accuracy": 0.3 * e} for e in (1, 2)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    # left by a run the folder held before: without metrics.json it is not this run's
    (tmp_path / CONFUSION).write_text(json.dumps(
        {"split": "test", "heads": {"label": {"classes": ["a", "b"], "counts": [[1, 0], [0, 1]]}}}))
    assert draw_run(tmp_path) == [tmp_path / CURVES]
    (tmp_path / "metrics.json").write_text("{}")
    assert draw_run(tmp_path) == [tmp_path / CURVES, tmp_path / "confusion_label.png"]
    with pytest.raises(PlotsUnavailable, match="no metrics.jsonl"):
        draw_run(tmp_path / "nothing")


def test_without_matplotlib_the_callback_notes_it_and_the_command_says_how(
        run_without_plots, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    notes: list[str] = []
    trainer = SimpleNamespace(run=run_without_plots.run, note=notes.append)
    Plots().on_train_end(trainer=trainer, metrics={})
    assert notes == [MISSING_NOTE]
    assert main(["plots", str(run_without_plots.run.path)]) == 2
    assert capsys.readouterr().err == f"error: {MISSING_NOTE}\n"


def test_only_single_label_classification_heads_have_a_confusion_matrix():
    outputs = {"label": torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]]),
               "score": torch.tensor([[0.5], [0.1], [0.2]])}
    targets = {"label": torch.tensor([0, 0, 0]), "score": torch.tensor([0.4, 0.2, 0.1])}
    result = SplitResult(metrics={}, rows=3, outputs=outputs, targets=targets)
    model = SimpleNamespace(heads={
        "label": SimpleNamespace(categorical=True, classes=["x", "y"]),
        "score": SimpleNamespace(categorical=False)})
    assert confusion_matrices(model, {"validation": result}) == {
        "split": "validation", "heads": {"label": {"classes": ["x", "y"],
                                                   "counts": [[2, 1], [0, 0]]}}}
    assert confusion_matrices(model, {"train": result}) is None
    model.heads.pop("label")
    assert confusion_matrices(model, {"test": result}) is None


def test_the_final_evaluation_removes_a_confusion_json_the_run_does_not_write(
        tmp_path, monkeypatch):
    data = toy.write_data(tmp_path / "data.csv")
    spec = toy.spec_dict(data, tmp_path / "cache", epochs=1, callbacks=[])
    run = tmp_path / "run"
    Trainer(spec, output=run, registry=toy.registry(), plots=False, report=False,
            quiet=True).fit()
    assert (run / CONFUSION).is_file()
    # the folder's next run has no classification head (as the stand-in says)
    monkeypatch.setattr("mmcore.train.final_evaluation.confusion_matrices", lambda m, r: None)
    Trainer(spec, output=run, registry=toy.registry(), plots=False, report=False,
            quiet=True, overwrite=True).fit()
    assert not (run / CONFUSION).exists()
