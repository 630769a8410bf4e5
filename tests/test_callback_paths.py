"""Callbacks named by import path (``"package.module:Class"`` in ``train.callbacks``): a
spec file may name its own module's classes; a ``spec.json`` read from a run folder names
none outside mmcore and installed plugins without trust, and evaluating such a run imports
nothing."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

import mmcore
from mmcore.cli import main
from tests import train_toy as toy


@pytest.fixture(autouse=True)
def toy_plugins(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with toy.process_registry():
        yield


RECORDER = '''
import json
from pathlib import Path

import mmcore

Path(__file__).with_suffix(".imported").write_text("imported")


class Recorder:
    """Writes the epochs it saw to <run>/recorded.json."""

    def __init__(self):
        self.epochs = []

    @mmcore.hookimpl
    def on_epoch_end(self, trainer, epoch, metrics):
        self.epochs.append(epoch)

    @mmcore.hookimpl
    def on_train_end(self, trainer, metrics):
        (Path(trainer.run_dir) / "recorded.json").write_text(json.dumps(self.epochs))


class NotACallback:
    pass
'''


@pytest.fixture
def recorder_module(tmp_path):
    """A module of the user's beside the spec file, under a name no other test imports."""
    name = f"recorder_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(RECORDER))
    yield name
    sys.modules.pop(name, None)


def test_a_callback_class_by_import_path_from_a_spec_file(tmp_path, recorder_module):
    run = tmp_path / "run"
    spec = toy.callbacks_spec(tmp_path, ["csv", f"{recorder_module}:Recorder"])
    assert toy.train_quietly(spec, run) == 0
    assert json.loads((run / "recorded.json").read_text()) == [1, 2]
    saved = json.loads((run / "spec.json").read_text())
    assert saved["train"]["callbacks"] == ["csv", f"{recorder_module}:Recorder"]


def test_a_callback_path_that_is_no_callback_or_a_file_is_an_error(tmp_path, recorder_module,
                                                                   capsys):
    spec = toy.callbacks_spec(tmp_path, [f"{recorder_module}:NotACallback",
                                         "callbacks.py:Recorder", f"{recorder_module}:Missing"])
    assert main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "train.callbacks.0: callback" in err and "is not a callback class" in err
    assert "train.callbacks.1: callback 'callbacks.py:Recorder': a file path" in err
    assert "train.callbacks.2: callback" in err and "cannot be imported" in err


@pytest.fixture
def trained_with_recorder(tmp_path, recorder_module, monkeypatch):
    """``(run, marker)``: a run trained with the recorder callback, then the recorder module
    forgotten (not imported, its ``marker`` file gone) though still importable: what a later
    command must not import without trust."""
    run = tmp_path / "run"
    spec = toy.callbacks_spec(tmp_path, ["csv", f"{recorder_module}:Recorder"])
    assert toy.train_quietly(spec, run) == 0
    sys.modules.pop(recorder_module)
    marker = tmp_path / f"{recorder_module}.imported"
    marker.unlink()
    monkeypatch.syspath_prepend(str(tmp_path))  # importable: refused for trust, not absence
    return run, marker


def test_a_spec_json_names_no_callback_module_without_trust(tmp_path, recorder_module,
                                                            trained_with_recorder, capsys):
    run, marker = trained_with_recorder

    # `mmcore train runs/x/spec.json`: the run folder is data, its module is not imported
    again = tmp_path / "again"
    assert main(["train", str(run / "spec.json"), "--output", str(again), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"train.callbacks.1: '{recorder_module}:Recorder' refused: module" in err
    assert "trust_code=True" in err and "Traceback" not in err
    assert not marker.exists() and recorder_module not in sys.modules
    assert not again.exists()

    assert "--trust-code (mmcore train, mmcore validate, mmcore tune)" in err

    # opting in imports it (the command line's flag, or Python's argument); a callback of
    # mmcore's own modules needs no trust
    assert main(["train", str(run / "spec.json"), "--output", str(again), "--quiet",
                 "--trust-code", "--no-report"]) == 0
    assert json.loads((again / "recorded.json").read_text()) == [1, 2] and marker.exists()
    spec = mmcore.load_spec(run / "spec.json", trust_code=True)
    assert spec.train.callbacks[1] == f"{recorder_module}:Recorder"
    data = json.loads((run / "spec.json").read_text())
    data["train"]["callbacks"] = ["mmcore.train.callbacks:CSVLogger"]
    (tmp_path / "own.json").write_text(json.dumps(data))
    assert mmcore.load_spec(tmp_path / "own.json").train.callbacks == [
        "mmcore.train.callbacks:CSVLogger"]


def test_evaluating_a_run_with_a_callback_path_imports_nothing(trained_with_recorder):
    run, marker = trained_with_recorder
    predictor = mmcore.load(run)  # callbacks are the trainer's business: not needed here
    assert predictor is not None and not marker.exists()


def test_json_data_from_no_folder_names_a_callback_with_trust(tmp_path, trained_with_recorder):
    """``spec_from_json(data)`` without ``base_dir`` comes from no folder: the working
    directory is not taken for one, so a user's module there is refused without the opt-in
    (as any module outside the allow-list) and imported with it."""
    from mmcore.errors import SpecError
    from mmcore.spec import spec_from_json

    run, marker = trained_with_recorder  # the recorder module sits in the working directory
    data = json.loads((run / "spec.json").read_text())
    data["data"] = {**data["data"], "path": str(tmp_path / data["data"]["path"])}
    with pytest.raises(SpecError, match="none of mmcore's callback modules") as refused:
        mmcore.Trainer(spec_from_json(data), output=tmp_path / "x")
    assert "inside the run folder" not in str(refused.value) and not marker.exists()
    trainer = mmcore.Trainer(spec_from_json(data), output=tmp_path / "x", trust_code=True)
    assert trainer.spec.train.callbacks[1].endswith(":Recorder") and marker.exists()
