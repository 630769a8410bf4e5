"""After training: the data overrides evaluate/predict take, unknown labels, fusions that
cannot be imported, and encoders whose output differs from what they declare."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import torch

import mmcore
import mmcore.inference.predict
from mmcore.batch import Features
from mmcore.cli import main
from mmcore.errors import DataError, PluginError, SpecError
from mmcore.layers import run_rnn
from mmcore.plugins.discovery import new_plugin_manager
from mmcore.plugins.registry import Registry
from mmcore.spec import validate_spec
from mmcore.train import Trainer
from tests import train_toy as toy
from tests.toy import ToyEncoder, ToyModality, ToyOptions, ToyPlugin


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("overrides")
    reg = toy.registry()
    data = toy.write_data(root / "data.csv")
    spec = validate_spec(toy.spec_dict(data, root / "cache", epochs=1), registry=reg)
    Trainer(spec, output=root / "run", registry=reg, plots=False, quiet=True).fit()
    yield {"run": root / "run", "data": data, "reg": reg}
    torch.set_num_threads(before)


def _write(path, rows):
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["x", "z", "y"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_missing_modality_evaluation_from_the_cli(trained, tmp_path, monkeypatch, capsys):
    rows = [{"x": 10.0 + i % 3, "z": "" if i % 2 else 0.5, "y": toy.CLASSES[i % 3]}
            for i in range(6)]
    data = _write(tmp_path / "no_z.csv", rows)
    with pytest.raises(DataError, match="allow_missing"):
        mmcore.load(trained["run"], registry=trained["reg"]).evaluate(data=data)
    predictor = mmcore.load(trained["run"], registry=trained["reg"],
                            overrides=["data.allow_missing=true"])
    assert predictor.spec.data.allow_missing is True
    assert predictor.evaluate(data=data)["rows"] == 6
    assert len(predictor.predict([{"x": 10.0, "z": None}, {"x": 11.0, "z": 0.2}])) == 2
    saved = json.loads((trained["run"] / "spec.json").read_text())
    assert not saved["data"].get("allow_missing")  # not written back
    skipping = mmcore.load(trained["run"], registry=trained["reg"],
                           overrides=["data.bad_rows=skip"])
    assert skipping.evaluate(data=data)["rows"] == 3

    monkeypatch.setattr(mmcore.inference.predict, "get_registry", lambda: trained["reg"])
    run = str(trained["run"])
    assert main(["evaluate", run, "--data", str(data), "--no-report", "--json",
                 "data.allow_missing=true"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 6
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"x": 10.0}\n{"x": 11.0, "z": 0.3}\n')
    assert main(["predict", run, "--input", str(inputs), "data.allow_missing=true"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_other_overrides_are_refused_naming_the_allowed_ones(trained, monkeypatch, capsys,
                                                             tmp_path):
    with pytest.raises(SpecError, match=r"train\.epochs: cannot be changed after training; "
                       r"allowed here: data\.allow_missing=\.\.\., data\.bad_rows=\.\.\., "
                       r"train\.eval_batch_size=\.\.\."):
        mmcore.load(trained["run"], registry=trained["reg"], overrides=["train.epochs=3"])
    with pytest.raises(SpecError, match=r"data\.bad_rows: .*'maybe'"):
        mmcore.load(trained["run"], registry=trained["reg"], overrides=["data.bad_rows=maybe"])
    monkeypatch.setattr(mmcore.inference.predict, "get_registry", lambda: trained["reg"])
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"x": 10.0, "z": 0.3}\n')
    assert main(["predict", str(trained["run"]), "-i", str(inputs), "data.bad_rows=skip"]) == 2
    err = capsys.readouterr().err
    assert "data.bad_rows: cannot be changed" in err and "data.allow_missing=..." in err
    assert main(["evaluate", str(trained["run"]), "data.path=x.csv"]) == 2
    assert "data.path: cannot be changed after training" in capsys.readouterr().err


def test_evaluate_takes_its_batch_size_and_gives_the_same_figures(trained, monkeypatch,
                                                                 capsys):
    """A run evaluated in batches of another size (e.g. to fit in memory) gives the same
    figures; a bad size is named."""
    figures = {}
    for rows in ("auto", "1"):
        predictor = mmcore.load(trained["run"], registry=trained["reg"],
                                overrides=[f"train.eval_batch_size={rows}"])
        assert predictor.spec.train.eval_batch_size == (1 if rows == "1" else "auto")
        figures[rows] = predictor.evaluate(split="test", report=False)["metrics"]
    assert figures["1"] == pytest.approx(figures["auto"], rel=1e-5, abs=1e-6)
    with pytest.raises(SpecError, match=r"train\.eval_batch_size: .*'4x'"):
        mmcore.load(trained["run"], registry=trained["reg"],
                    overrides=["train.eval_batch_size=4x"])


def test_an_unseen_label_points_to_the_classes_option(trained, tmp_path):
    data = _write(tmp_path / "new_label.csv",
                  [{"x": 10.0, "z": 0.1, "y": "a"}, {"x": 11.0, "z": 0.2, "y": "zebra"}])
    predictor = mmcore.load(trained["run"], registry=trained["reg"])
    with pytest.raises(DataError, match=r"'zebra'.*heads\.label\.options\.classes") as info:
        predictor.evaluate(data=data)
    assert "bad_rows" not in str(info.value)


def test_a_fusion_that_cannot_be_imported_is_named(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    spec = json.loads((run / "spec.json").read_text())
    spec["fusion"]["name"] = "no_such_package.fusions:MyFusion"
    (run / "spec.json").write_text(json.dumps(spec))
    for trust in (False, True):
        with pytest.raises(SpecError,
                           match=r"(?s)spec\.json.*fusion\.name.*no_such_package") as info:
            mmcore.load(run, registry=trained["reg"], trust_code=trust)
        assert "--trust-code" not in str(info.value)


class LyingEncoder(ToyEncoder):
    """Declares ``hidden`` features but returns ``hidden + 3``."""

    def __init__(self, hidden: int, sequence: bool) -> None:
        super().__init__(hidden, sequence)
        self.rnn = torch.nn.GRU(1, hidden + 3, batch_first=True)


class LyingModality(ToyModality):
    def build_encoder(self):
        return LyingEncoder(self.options.hidden, self.options.output == "sequence")


class SequenceLiar(ToyEncoder):
    """Declares pooled features but returns the whole sequence."""

    def forward(self, batch):
        out, _ = run_rnn(self.rnn, batch.values.unsqueeze(-1), batch.mask)
        return Features(out, batch.present, batch.mask)


class SequenceLiarModality(ToyModality):
    def build_encoder(self):
        return SequenceLiar(self.options.hidden, False)


class LiarPlugin:
    @mmcore.hookimpl
    def register_modalities(self, register):
        register("liar", LyingModality, ToyOptions, "declares the wrong output_size")
        register("seqliar", SequenceLiarModality, ToyOptions, "declares pooled, returns a sequence")


@pytest.mark.parametrize("plugin, expected", [
    ("liar", r"modality 'b' \(plugin 'liar'\): encoder .*LyingEncoder declares "
             r"output_size=8 but returned features of size 11"),
    ("seqliar", r"modality 'b' \(plugin 'seqliar'\): encoder .*SequenceLiar declares pooled "
                r"\[B, D\] features .* returned sequence values of shape \[4, "),
])
def test_an_encoder_that_lies_about_its_output_is_named_before_training(tmp_path, plugin,
                                                                        expected):
    pm = new_plugin_manager()
    pm.register(LiarPlugin(), name="liar")
    pm.register(ToyPlugin(), name="toy")
    reg = Registry(pm)
    data = toy.write_data(tmp_path / "data.csv")
    spec = toy.spec_dict(data, tmp_path / "cache", epochs=1)
    spec["modalities"] = {
        "a": {"plugin": "toy", "column": "x", "options": {"hidden": 8}},
        "b": {"plugin": plugin, "column": "z", "options": {"hidden": 8}},
    }
    trainer = Trainer(validate_spec(spec, registry=reg), output=tmp_path / "run", registry=reg,
                      plots=False, quiet=True)
    with pytest.raises(PluginError, match=expected):
        trainer.fit()
