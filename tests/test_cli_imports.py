"""What the light commands import: ``mmcore plugins`` no server module, torch or numpy, and
``mmcore validate SPEC --no-data`` neither torch nor ``datasets``, each run in a fresh
process; the parser a command line gets still knows every command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmcore.cli import COMMANDS, build_parser, command_of, main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
HEAVY = ("torch", "datasets", "mmcore.serve")


def imported_by(*argv: str) -> tuple[set[str], str]:
    """Which of :data:`HEAVY` (and numpy) ``mmcore ARGV`` imports, run through the CLI's
    ``main`` in a fresh interpreter, and its stdout."""
    code = (
        "import json, sys\n"
        "from mmcore.cli import main\n"
        f"code = main({list(argv)!r})\n"
        "sys.stdout.flush()\n"
        f"heavy = [m for m in {[*HEAVY, 'numpy']!r} if m in sys.modules]\n"
        "print('\\n' + json.dumps({'code': code, 'heavy': heavy}))\n"
    )
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, **env}, check=False)
    assert result.returncode == 0, result.stderr
    *out, last = result.stdout.rstrip("\n").split("\n")
    found = json.loads(last)
    assert found["code"] == 0, result.stderr
    return set(found["heavy"]), "\n".join(out)


def test_plugins_imports_no_server_torch_or_numpy() -> None:
    heavy, out = imported_by("plugins", "--json")
    assert heavy == set()
    assert any(p["name"] == "mmcore" for p in json.loads(out)["plugins"])


@pytest.mark.parametrize("spec", ["av_digits/spec.py", "text_sentiment/spec.py"])
def test_validate_without_data_imports_neither_torch_nor_datasets(spec: str) -> None:
    heavy, out = imported_by("validate", str(EXAMPLES / spec), "--no-data")
    assert heavy & set(HEAVY) == set()
    assert ": valid." in out


def test_validate_with_data_imports_no_server_module() -> None:
    heavy, out = imported_by("validate", str(EXAMPLES / "text_sentiment/spec.py"))
    assert "mmcore.serve" not in heavy
    assert "splits: train" in out


def test_command_of_reads_the_command_word_only() -> None:
    assert command_of(["plugins", "--json"]) == "plugins"
    assert command_of(["--debug", "validate", "spec.py"]) == "validate"
    assert command_of(["--version"]) is None
    assert command_of(["spec.py"]) is None  # not a command: the full parser reports it
    assert command_of(["--", "plugins"]) is None


def test_the_full_parser_still_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    usage = build_parser().format_help()
    for name in COMMANDS:
        assert name in usage
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice" in err and "plugins" in err and "serve" in err


def test_a_named_command_parses_as_before(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--help"])
    assert exc.value.code == 0
    assert "usage: mmcore serve" in capsys.readouterr().out
