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
    assert "--trust-code (mmcore train, mmcore validate)" in err and "Traceback" not in err
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
