"""The command line: exit codes, readable errors, JSON output, and no torch where none is needed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mmcore.cli import main
from mmcore.errors import SpecError

BROKEN = """spec = {
    "data": {"path": "data.csv"},
    "modalities": {"a": {"plugin": "no-such-modality", "column": "x"}},
    "heads": {"label": {"target": "y", "kind": "clasification"}},
}
"""


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmcore", *args], capture_output=True, text=True)


def test_validate_reports_errors_with_exit_code_2_and_no_traceback(tmp_path):
    spec = tmp_path / "broken.py"
    spec.write_text(BROKEN)
    result = run("validate", str(spec))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert str(spec) in result.stderr
    assert "modalities.a.plugin: unknown modality 'no-such-modality'" in result.stderr
    assert "did you mean 'classification'" in result.stderr


def test_debug_shows_the_traceback(tmp_path):
    spec = tmp_path / "broken.py"
    spec.write_text(BROKEN)
    result = run("validate", str(spec), "--debug")
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_missing_spec_file_is_a_user_error(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.py")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_plugins_json_lists_the_core_plugin(capsys):
    assert main(["plugins", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    core = next(p for p in data["plugins"] if p["name"] == "mmcore")
    assert core["status"] == "loaded" and "concat" in core["provides"]["fusion"]


def test_version():
    result = run("--version")
    assert result.returncode == 0 and result.stdout.startswith("mmcore ")


def test_import_plugins_and_validate_need_no_torch(tmp_path):
    spec = tmp_path / "broken.py"
    spec.write_text(BROKEN)
    code = (
        "import sys, mmcore\n"
        "from mmcore.cli import main\n"
        "main(['plugins'])\n"
        f"main(['validate', {str(spec)!r}])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_overrides_may_follow_options():
    spec = Path(__file__).resolve().parents[1] / "examples/text_sentiment/spec.py"
    with pytest.raises(SpecError, match="train.epochs"):
        main(["validate", str(spec), "--debug", "train.epochs=0"])
