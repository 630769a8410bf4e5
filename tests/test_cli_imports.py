"""What the light commands import: ``mmcore plugins`` no server module, torch or numpy,
``mmcore validate SPEC --no-data`` neither torch nor ``datasets``, and ``mmcore validate SPEC``
with its data checks no ``datasets`` and no torch but the head classes', each run in a fresh
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


#: what only a model, a loader or a batch needs: a spec's data checks import none of them
MODEL_SIDE = ("mmcore.model", "mmcore.batch", "mmcore.collate", "mmcore.data.loader",
              "mmcore.data.memory", "mmcore_plugin_audio.encoder", "mmcore_plugin_image.encoder")

#: run first in the fresh interpreter: records the file whose import statement imports torch
RECORD_TORCH_IMPORTER = """
import sys, traceback
class _Watch:
    importer = None
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and _Watch.importer is None:
            frames = [f for f in traceback.extract_stack()[:-1] if "importlib" not in f.filename]
            _Watch.importer = frames[-1].filename
        return None
sys.meta_path.insert(0, _Watch())
"""


def imported_by(*argv: str) -> tuple[set[str], str]:
    """Which of :data:`HEAVY` (and numpy) ``mmcore ARGV`` imports, run through the CLI's
    ``main`` in a fresh interpreter, and its stdout; with the heavy names, ``"torch by
    <file>"`` names the file that imported torch first, and ``MODEL_SIDE`` modules imported
    appear by name."""
    code = (
        RECORD_TORCH_IMPORTER
        + "import json\n"
        "from mmcore.cli import main\n"
        f"code = main({list(argv)!r})\n"
        "sys.stdout.flush()\n"
        f"heavy = [m for m in {[*HEAVY, 'numpy', *MODEL_SIDE]!r} if m in sys.modules]\n"
        "if _Watch.importer: heavy.append('torch by ' + _Watch.importer)\n"
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


@pytest.mark.parametrize(("spec", "splits"), [
    ("av_digits/spec.py", "train 500 rows, validation 100, test 200"),
    ("text_sentiment/spec.py", "train 2,400 rows, validation 300, test 300"),
])
def test_validate_with_data_checks_imports_no_datasets_and_no_model_code(
    spec: str, splits: str
) -> None:
    # the README's command: columns, split sizes and the heads' options against the train
    # targets, from the csv's header and the columns those checks read
    heavy, out = imported_by("validate", str(EXAMPLES / spec))
    assert f"splits: {splits}" in out
    assert "datasets" not in heavy and "mmcore.serve" not in heavy
    assert not heavy & set(MODEL_SIDE)
    # the one torch import left: the head classes (their fit_targets, which the classes and
    # class_weights check runs, are methods of torch modules)
    importers = [Path(h.removeprefix("torch by ")) for h in heavy if h.startswith("torch by ")]
    assert all(p.parent.name == "heads" or p.name == "head.py" for p in importers), importers


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
