"""What the light commands import: ``mmcore plugins`` no server module, torch or numpy,
``mmcore validate SPEC --no-data`` neither torch nor ``datasets``, and ``mmcore validate SPEC``
with its data checks neither either (the built-in heads' targets are fitted without their torch
modules) nor pandas (pyarrow's ``to_numpy`` and ``pa.array`` import it), each run in a fresh
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
HEAVY = ("torch", "datasets", "mmcore.inference.serve")


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
    """Which of :data:`HEAVY` (and numpy, pandas) ``mmcore ARGV`` imports, run through the CLI's
    ``main`` in a fresh interpreter, and its stdout; with the heavy names, ``"torch by
    <file>"`` names the file that imported torch first, and ``MODEL_SIDE`` modules imported
    appear by name."""
    code = (
        RECORD_TORCH_IMPORTER
        + "import json\n"
        "from mmcore.cli import main\n"
        f"code = main({list(argv)!r})\n"
        "sys.stdout.flush()\n"
        f"heavy = [m for m in {[*HEAVY, 'numpy', 'pandas', *MODEL_SIDE]!r} "
        "if m in sys.modules]\n"
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
def test_validate_with_data_checks_imports_neither_torch_nor_datasets(
    spec: str, splits: str
) -> None:
    # the README's command: columns, split sizes and the heads' options against the train
    # targets, from the csv's header and the columns those checks read; the classification
    # head's classes and class weights are fitted by mmcore.heads.targets, not the head class
    heavy, out = imported_by("validate", str(EXAMPLES / spec))
    assert f"splits: {splits}" in out
    assert heavy & {*HEAVY, "pandas", *MODEL_SIDE} == set(), heavy
    assert not [h for h in heavy if h.startswith("torch by ")], heavy


def test_validate_checks_a_metric_monitor_without_torch() -> None:
    # train.monitor names a head's metric: the names and directions are the built-in heads'
    # torch-free target side's (mmcore.heads.targets), so the check imports no model code
    heavy, out = imported_by("validate", str(EXAMPLES / "av_digits/spec.py"), "--no-data",
                             "train.monitor=digit.macro_f1")
    assert ": valid." in out
    assert heavy & {*HEAVY, *MODEL_SIDE} == set(), heavy


@pytest.mark.parametrize("split", [{}, {"group_column": "g"}])
def test_a_seeded_split_is_checked_without_pandas(tmp_path: Path, split: dict) -> None:
    # no split column: the rows are split by seed (stratified by the head's target, whole
    # groups with a group column), reading the columns with pyarrow alone
    lines = ["x,y,g", *(f"{i},{'abc'[i % 3]},{i % 10}" for i in range(60))]
    (tmp_path / "rows.csv").write_text("\n".join(lines) + "\n")
    spec = {
        "modalities": {"x": {"plugin": "tabular", "column": "x"}},
        "heads": {"y": {"kind": "classification", "target": "y"}},
        "data": {"path": "rows.csv", "split": split},
    }
    (tmp_path / "spec.py").write_text(f"spec = {spec!r}\n")
    heavy, out = imported_by("validate", str(tmp_path / "spec.py"))
    assert "splits: train " in out
    assert heavy & {*HEAVY, "pandas", *MODEL_SIDE} == set(), heavy


def test_validate_with_data_still_refuses_class_weights_the_data_does_not_fit(
    tmp_path: Path,
) -> None:
    # the torch-free check is the same check: a class_weights list of the wrong length for
    # the classes in the train split is an error, still without importing torch
    (tmp_path / "rows.csv").write_text("x,y,split\n1,a,train\n2,b,train\n3,c,train\n"
                                       "4,a,validation\n")
    spec = {
        "modalities": {"x": {"plugin": "tabular", "column": "x"}},
        "heads": {"y": {"kind": "classification", "target": "y",
                        "options": {"class_weights": [1.0, 2.0]}}},
        "data": {"path": "rows.csv", "split_column": "split"},
    }
    (tmp_path / "spec.py").write_text(f"spec = {spec!r}\n")
    code = (RECORD_TORCH_IMPORTER
            + "from mmcore.cli import main\n"
            f"code = main(['validate', {str(tmp_path / 'spec.py')!r}])\n"
            "print('torch' in sys.modules, code)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False, env={**os.environ, "HF_HUB_OFFLINE": "1",
                                              "HF_DATASETS_OFFLINE": "1"})
    assert "class_weights has 2 value(s) but there are 3 classes" in result.stderr
    assert result.stdout.split()[:1] == ["False"], result.stdout + result.stderr


def test_the_torch_free_target_side_is_each_built_in_head_s_own() -> None:
    # what validate fits with (no torch) is what training fits with (the head class)
    from mmcore.head import Head
    from mmcore.heads.targets import BUILTIN, HeadTargets
    from mmcore.plugins.default import get_registry
    from mmcore.plugins.registry import import_object

    assert Head.fit_targets is HeadTargets.fit_targets
    registered = {r.impl for r in get_registry().entries("head") if r.plugin == "mmcore"}
    assert registered == set(BUILTIN)
    for path, targets in BUILTIN.items():
        head = import_object(path)
        assert issubclass(head, targets)
        assert head.fit_targets is targets.fit_targets
        assert head.encode_targets is targets.encode_targets
        assert head.categorical is targets.categorical


def test_validate_with_data_imports_no_server_module() -> None:
    heavy, out = imported_by("validate", str(EXAMPLES / "text_sentiment/spec.py"))
    assert "mmcore.inference.serve" not in heavy
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


def _finished_run_folder(folder: Path) -> Path:
    """What a finished run keeps for its pictures: ``metrics.jsonl``, ``metrics.json`` and
    ``confusion.json``."""
    folder.mkdir()
    records = [{"epoch": e, "train/loss": 1.0 / e, "validation/loss": 1.2 / e,
                "validation/label.accuracy": 0.3 * e} for e in (1, 2)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "metrics.json").write_text("{}")
    (folder / "confusion.json").write_text(json.dumps(
        {"split": "test", "heads": {"label": {"classes": ["a", "b"], "counts": [[3, 1], [0, 4]]}}}))
    return folder


def test_plots_imports_no_torch(tmp_path: Path) -> None:
    # the pictures are drawn from the run folder's JSON files: mmcore.train's Trainer is
    # imported on first use, and the file names come from mmcore.run.files, not the
    # checkpoint code
    pytest.importorskip("matplotlib")
    run = _finished_run_folder(tmp_path / "run")
    heavy, out = imported_by("plots", str(run))
    assert heavy & {*HEAVY, *MODEL_SIDE} == set(), heavy
    assert not [h for h in heavy if h.startswith("torch by ")], heavy
    assert out.split() == [str(run / "training_curves.png"), str(run / "confusion_label.png")]


def test_the_trainer_is_still_where_it_was() -> None:
    code = ("import sys, mmcore.train, mmcore.train.plots\n"
            "print('torch' in sys.modules)\n"
            "from mmcore.train import Trainer\n"
            "import mmcore\n"
            "from mmcore.train.trainer import Trainer as T\n"
            "print(Trainer is T and mmcore.Trainer is T and mmcore.train.Trainer is T,\n"
            "      'Trainer' in dir(mmcore.train))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False)
    assert result.stdout.split() == ["False", "True", "True"], result.stderr


def test_training_on_a_warm_cache_imports_neither_datasets_nor_pandas(tmp_path) -> None:
    # the second run of a spec reads its Arrow cache through the set-up record: no `datasets`,
    # and pyarrow's numpy conversions (which import pandas, 0.3 s) are not on that path
    table = tmp_path / "steps.csv"
    lines = ["split,label," + ",".join(f"s{i}" for i in range(8))]
    for i in range(40):
        split = "train" if i % 5 < 3 else "validation" if i % 5 == 3 else "test"
        lines.append(f"{split},{i % 2}," + ",".join(str((i % 2) + 0.1 * j) for j in range(8)))
    table.write_text("\n".join(lines) + "\n")
    spec = tmp_path / "spec.py"
    spec.write_text("spec = " + repr({
        "name": "warm", "data": {"path": str(table), "split_column": "split",
                                 "cache_dir": str(tmp_path / "cache")},
        "modalities": {"steps": {"plugin": "gesture", "column": [f"s{i}" for i in range(8)],
                                 "options": {"channels": 1}}},
        "heads": {"label": {"kind": "classification", "target": "label"}},
        "train": {"epochs": 1, "progress": False},
    }) + "\n")
    argv = ("train", str(spec), "--output", str(tmp_path / "run"), "--quiet", "--no-plots",
            "--overwrite")
    imported_by(*argv)  # fills the cache
    heavy, _ = imported_by(*argv)
    assert "pandas" not in heavy and "datasets" not in heavy
