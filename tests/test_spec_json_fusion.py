"""A ``spec.json`` is data: a fusion it names by path is imported by ``mmcore validate``,
``mmcore train`` and ``mmcore.load_spec`` only from an allowed module, and a Python file only
with ``--trust-code`` / ``trust_code=True`` (as ``mmcore.load`` treats a run folder's)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import mmcore
from mmcore.cli import main
from mmcore.errors import SpecError
from mmcore.spec.load import spec_to_json

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "av_digits" / "spec.py"
#: a fusion file that leaves a marker when it is executed
EVIL = '''import pathlib
pathlib.Path(__file__).with_name("executed").touch()
from mmcore.fusions.concat import ConcatFusion as Fusion
'''


@pytest.fixture
def spec_json(tmp_path: Path):
    """A function writing the demo's spec as ``spec.json`` with ``fusion.name`` as given,
    beside ``fusion.py`` (:data:`EVIL`); returns its path."""
    (tmp_path / "fusion.py").write_text(EVIL)
    data = spec_to_json(mmcore.load_spec(EXAMPLE))

    def write(fusion: str) -> Path:
        data["fusion"] = {"name": fusion, "options": {}}
        path = tmp_path / "spec.json"
        path.write_text(json.dumps(data))
        return path

    return write


def test_a_fusion_file_in_a_spec_json_is_not_run_without_trust(spec_json, tmp_path, capsys):
    path = spec_json("fusion.py:Fusion")
    assert main(["validate", str(path), "--no-data"]) == 2
    assert main(["train", str(path), "--output", str(tmp_path / "run"), "--quiet"]) == 2
    with pytest.raises(SpecError, match="Python file path"):
        mmcore.load_spec(path)
    err = capsys.readouterr().err
    assert "fusion.name: 'fusion.py:Fusion' refused: it is a Python file path" in err
    assert "--trust-code (mmcore train, mmcore validate, mmcore tune)" in err
    assert "Traceback" not in err
    assert not (tmp_path / "executed").exists() and not (tmp_path / "run").exists()

    assert main(["validate", str(path), "--no-data", "--trust-code"]) == 0  # opted in: run
    assert (tmp_path / "executed").exists()


def test_a_spec_json_fusion_module_must_be_an_allowed_one(spec_json, capsys):
    with pytest.raises(SpecError, match="module 'os.path' is none of mmcore's fusion modules"):
        mmcore.load_spec(spec_json("os.path:join"))
    assert main(["validate", str(spec_json("os.path:join")), "--no-data"]) == 2
    assert "fusion.name: 'os.path:join' refused" in capsys.readouterr().err
    # mmcore's own fusion modules need no trust
    spec = mmcore.load_spec(spec_json("mmcore.fusions.concat:ConcatFusion"))
    assert spec.fusion.name == "mmcore.fusions.concat:ConcatFusion"


def test_a_spec_json_with_a_refused_field_still_runs_no_fusion_file(spec_json, tmp_path):
    """When pydantic refuses a field, the rest is still checked (every problem at once): as
    data, so its fusion file is not run then either."""
    path = spec_json("fusion.py:Fusion")
    data = json.loads(path.read_text())
    data["train"]["epochs"] = "many"
    path.write_text(json.dumps(data))
    with pytest.raises(SpecError) as caught:
        mmcore.load_spec(path)
    fields = [field for field, _ in caught.value.problems]
    assert "train.epochs" in fields and "fusion.name" in fields
    assert not (tmp_path / "executed").exists()


def test_an_environment_inside_the_specs_folder_is_no_reason_to_refuse(tmp_path):
    """A project's ``.venv`` beside its ``spec.json`` holds the user's installs: a module found
    in its site-packages is not "inside the folder"; the folder's own files are."""
    from mmcore.spec.trust import _inside

    folder = tmp_path.resolve()
    site = folder / ".venv" / "lib" / "python3.11" / "site-packages" / "pkg" / "mod.py"
    assert not _inside(str(site), folder)
    assert _inside(str(folder / "pkg" / "mod.py"), folder)
    assert not _inside(str(folder.parent / "elsewhere.py"), folder)


def test_prepare_takes_the_opt_in_too(spec_json, tmp_path):
    """``mmcore.prepare`` reads a spec.json as data, as train does, with the same opt-in."""
    path = spec_json("fusion.py:Fusion")
    with pytest.raises(SpecError, match="Python file path"):
        mmcore.prepare(path)
    assert not (tmp_path / "executed").exists()
    prepared = mmcore.prepare(path, trust_code=True)  # opted in: the file runs
    assert (tmp_path / "executed").exists()
    assert type(prepared.model.fusion).__name__ == "ConcatFusion"


def test_tune_takes_the_opt_in_too(spec_json, tmp_path, monkeypatch, capsys):
    """``mmcore tune`` refuses such a spec.json before any trial, and passes ``--trust-code``
    on to its workers."""
    from mmcore.cli import build_parser
    from mmcore.cli.tune import _worker_argv

    pytest.importorskip("optuna", reason="mmcore tune needs Optuna")
    monkeypatch.chdir(tmp_path)
    path = spec_json("fusion.py:Fusion")
    space = tmp_path / "space.py"
    space.write_text("def space(trial):\n    return {}\n")
    tune = ["tune", str(path), "--space", str(space), "--trials", "1"]
    assert main([*tune, "--output", str(tmp_path / "tune")]) == 2
    assert main(tune) == 2  # the default output folder is named after the spec
    err = capsys.readouterr().err
    assert "fusion.name: 'fusion.py:Fusion' refused" in err and "Traceback" not in err
    assert not (tmp_path / "executed").exists() and not (tmp_path / "tune" / "trials").exists()
    words = [*tune, "--trust-code", "--jobs", "2"]
    args = build_parser(["tune"]).parse_args(words)
    args.argv = words
    assert "--trust-code" in _worker_argv(args, "out")

    # opted in: the spec loads, and each trial's Trainer gets the opt-in too
    import mmcore.train

    given = []

    class Stop(Exception):
        pass

    def trainer(*args, **kwargs):
        given.append(kwargs.get("trust_code"))
        raise Stop

    monkeypatch.setattr(mmcore.train, "Trainer", trainer)
    with pytest.raises(Stop):
        main([*tune, "--output", str(tmp_path / "tune"), "--trust-code"])
    assert given == [True] and (tmp_path / "executed").exists()


def test_a_spec_made_from_json_data_stays_data(spec_json, tmp_path):
    """``spec_from_json`` gives a Spec object, but of data: ``Trainer`` and ``prepare`` check
    its fusion as a spec.json's; one loaded with ``trust_code=True`` is not refused again."""
    from mmcore.spec import spec_from_json
    from mmcore.train import Trainer

    path = spec_json("fusion.py:Fusion")
    spec = spec_from_json(json.loads(path.read_text()), tmp_path)
    with pytest.raises(SpecError, match="Python file path"):
        Trainer(spec, output=tmp_path / "run")
    with pytest.raises(SpecError, match="Python file path"):
        mmcore.prepare(spec)
    assert not (tmp_path / "executed").exists()

    prepared = mmcore.prepare(spec, trust_code=True)
    assert type(prepared.model.fusion).__name__ == "ConcatFusion"
    assert (tmp_path / "executed").exists()
    (tmp_path / "executed").unlink()
    with pytest.raises(SpecError, match="Python file path"):  # building a model from it
        mmcore.build_model(spec, prepared.data.modalities)
    assert not (tmp_path / "executed").exists()
    trusted = mmcore.load_spec(path, trust_code=True)
    assert Trainer(trusted, output=tmp_path / "run").spec.fusion.name == "fusion.py:Fusion"
    assert Trainer(trusted, overrides=["train.epochs=1"], output=tmp_path / "run").spec.train \
        .epochs == 1
