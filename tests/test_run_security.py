"""A run folder is data: loading it (``mmcore.load``, ``mmcore evaluate``, ``mmcore predict``)
never runs code from it nor calls anything that is not a ``Fusion`` subclass, unless the user
opts in with ``trust_code=True`` / ``--trust-code``."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest
import torch

import mmcore
from mmcore.cli import main
from mmcore.errors import SpecError
from mmcore.plugins.default import reset_registry
from mmcore.train import Trainer
from tests import train_toy as toy


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny trained runs (read-only): a built-in fusion and one defined in the spec file.
    The CLI sees the toy plugin through the process-wide registry."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    reg = toy.registry()
    reset_registry(reg)
    root = tmp_path_factory.mktemp("security")
    data = toy.write_data(root / "data.csv")
    plain = root / "plain"
    spec = toy.spec_dict(data, root / "cache", epochs=1, callbacks=[])
    Trainer(spec, output=plain, registry=reg, plots=False, quiet=True, report=False).fit()
    spec_file = root / "src" / "spec.py"
    spec_file.parent.mkdir()
    spec_file.write_text(toy.FUSION_SPEC.replace("SPEC", repr(spec)))
    custom = root / "custom"
    Trainer(spec_file, output=custom, registry=reg, plots=False, quiet=True, report=False).fit()
    spec_file.unlink()  # the run must not need the original file
    rows = root / "rows.jsonl"
    rows.write_text(json.dumps({"x": 10.0, "z": 0.3}) + "\n")
    yield {"plain": plain, "custom": custom, "reg": reg, "rows": rows}
    reset_registry(None)
    torch.set_num_threads(before)


def _tampered(runs, tmp_path, name, options=None):
    run = tmp_path / "run"
    shutil.copytree(runs["plain"], run)
    data = json.loads((run / "spec.json").read_text())
    data["fusion"] = {"name": name, "options": options or {}}
    (run / "spec.json").write_text(json.dumps(data))
    return run


def _evil(path, marker):
    """Python code that leaves ``marker`` behind when it runs, and defines a Fusion ``X``."""
    path.write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "import mmcore\n\n\nclass X(mmcore.Fusion):\n    pass\n"
    )
    return path


def _loads_refused(runs, run, value, capsys, *extra):
    """``mmcore.load``, ``mmcore evaluate`` and ``mmcore predict`` all refuse ``run``."""
    with pytest.raises(SpecError) as info:
        mmcore.load(run, registry=runs["reg"])
    message = str(info.value)
    assert "spec.json" in message and "fusion.name" in message and repr(value) in message
    for argv in (["evaluate", str(run), "--no-report"],
                 ["predict", str(run), "--input", str(runs["rows"])]):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2, err
        assert "Traceback" not in err
        assert "spec.json" in err and "fusion.name" in err and repr(value) in err
        for text in extra:
            assert text in err
    return message


def test_a_planted_file_path_is_refused_and_not_run(runs, tmp_path, capsys):
    marker = tmp_path / "ran"
    evil = _evil(tmp_path / "evil.py", marker)  # outside the run folder, like /tmp/evil.py
    value = f"{evil}:X"
    run = _tampered(runs, tmp_path, value)
    message = _loads_refused(runs, run, value, capsys, "--trust-code")
    assert "trust_code=True" in message
    assert not marker.exists()


def test_a_planted_spec_py_in_the_run_folder_is_refused_and_not_run(runs, tmp_path, capsys):
    marker = tmp_path / "ran"
    run = _tampered(runs, tmp_path, "spec.py:X")
    _evil(run / "spec.py", marker)
    message = _loads_refused(runs, run, "spec.py:X", capsys, "--trust-code")
    assert "spec file" in message and "trust_code=True" in message
    assert not marker.exists()


@pytest.mark.parametrize(
    ("value", "options"),
    [("os:system", {"command": "touch MARKER"}), ("builtins:eval", {}),
     ("os.path:join", {}), ("subprocess:Popen", {"args": "touch MARKER"})],
)
def test_installed_callables_that_are_not_fusions_are_never_called(
    runs, tmp_path, capsys, monkeypatch, value, options
):
    import builtins
    import subprocess

    calls = []

    def forbidden(*args, **kwargs):
        calls.append(args)
        raise AssertionError("a run folder made mmcore call a non-Fusion")

    monkeypatch.setattr(os, "system", forbidden)
    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(subprocess, "Popen", forbidden)
    marker = tmp_path / "ran"
    options = {k: v.replace("MARKER", str(marker)) for k, v in options.items()}
    run = _tampered(runs, tmp_path, value, options)
    message = _loads_refused(runs, run, value, capsys)
    # refused before the import (not an allowed module) or after it (not a Fusion)
    assert "not a subclass of mmcore.Fusion" in message or "none of mmcore's" in message
    assert calls == [] and not marker.exists()


@pytest.mark.parametrize("package", [False, True])
def test_a_module_inside_the_run_folder_is_refused_and_not_imported(
    runs, tmp_path, capsys, monkeypatch, package
):
    marker = tmp_path / "ran"
    name = "evil_pkg_in_run" if package else "evil_mod_in_run"
    run = _tampered(runs, tmp_path, f"{name}:X")
    if package:
        (run / name).mkdir()
        _evil(run / name / "__init__.py", marker)
    else:
        _evil(run / f"{name}.py", marker)
    monkeypatch.syspath_prepend(str(run))  # as if run from inside the folder
    monkeypatch.chdir(run)
    message = _loads_refused(runs, run, f"{name}:X", capsys, "--trust-code")
    assert "inside the run folder" in message
    assert "not imported even with the opt-in" in message  # so the hint does not promise it
    assert not marker.exists()
    monkeypatch.delitem(__import__("sys").modules, name, raising=False)


def test_an_unknown_module_is_refused(runs, tmp_path, capsys):
    run = _tampered(runs, tmp_path, "no_such_module_xyz:X")
    assert "not installed" in _loads_refused(runs, run, "no_such_module_xyz:X", capsys)


def test_an_installed_fusion_by_import_path_still_loads(runs, tmp_path):
    data = json.loads((runs["plain"] / "spec.json").read_text())
    run = _tampered(runs, tmp_path, "mmcore.fusions.concat:ConcatFusion",
                    data["fusion"]["options"])
    predictor = mmcore.load(run, registry=runs["reg"])
    assert type(predictor.model.fusion).__name__ == "ConcatFusion"
    assert len(predictor.predict([{"x": 10.0, "z": 0.3}])) == 1


def test_a_run_with_a_spec_file_fusion_loads_only_when_trusted(runs, capsys):
    run = runs["custom"]
    assert json.loads((run / "spec.json").read_text())["fusion"]["name"] == "spec.py:MeanFusion"
    message = _loads_refused(runs, run, "spec.py:MeanFusion", capsys, "--trust-code")
    assert "defined in its spec file" in message
    predictor = mmcore.load(run, registry=runs["reg"], trust_code=True)
    assert type(predictor.model.fusion).__name__ == "MeanFusion"
    assert len(predictor.predict([{"x": 10.0, "z": 0.3}])) == 1
    assert main(["evaluate", str(run), "--no-report", "--trust-code"]) == 0
    assert main(["predict", str(run), "--input", str(runs["rows"]), "--trust-code"]) == 0
    assert '"label"' in capsys.readouterr().out


@pytest.mark.parametrize("value", ["this:X", "antigravity:X", "json.tool:X", "os:system",
                                   "mmcore.cli:main", "mmcore.testing:FusionContract"])
def test_installed_modules_outside_the_allow_list_are_not_even_imported(
    runs, tmp_path, capsys, value
):
    # importing runs a module's top-level code: `this` prints, antigravity opens a browser;
    # even mmcore's own modules other than its fusion and head modules are refused
    module = value.split(":")[0]
    was_loaded = module in sys.modules
    run = _tampered(runs, tmp_path, value)
    message = _loads_refused(runs, run, value, capsys, "--trust-code")
    assert "none of mmcore's fusion modules nor a module an installed mmcore plugin" in message
    assert (module in sys.modules) == was_loaded


@pytest.mark.parametrize("value", ["mmcore.__main__:X", "venv.__main__:X", "__main__:X",
                                   "mmcore_plugin_audio.__main__:X"])
@pytest.mark.parametrize("trust", [False, True])
def test_a_main_module_is_never_imported(runs, tmp_path, capsys, monkeypatch, value, trust):
    # mmcore.__main__ runs sys.exit(main()) with the caller's argv; venv.__main__ builds a
    # venv: refused before the import, trusted or not, and no SystemExit escapes
    module = value.split(":")[0]
    was_loaded = module in sys.modules
    monkeypatch.chdir(tmp_path)
    run = _tampered(runs, tmp_path, value)
    with pytest.raises(SpecError, match=r"(?s)spec\.json.*fusion\.name.*__main__ module"):
        mmcore.load(run, registry=runs["reg"], trust_code=trust)
    if not trust:
        _loads_refused(runs, run, value, capsys, "__main__ module")
    assert (module in sys.modules) == was_loaded
    assert not (run / "pyvenv.cfg").exists() and not (tmp_path / "pyvenv.cfg").exists()


def _site_module(tmp_path, monkeypatch, name, body):
    """An installed module ``name`` (on ``sys.path``, outside the run folder)."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / f"{name}.py").write_text(body)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, name, raising=False)


def test_an_installed_module_that_is_no_plugin_is_not_imported(runs, tmp_path, capsys,
                                                               monkeypatch):
    marker = tmp_path / "ran"
    _site_module(tmp_path, monkeypatch, "site_evil_xyz", "")
    _evil(tmp_path / "site" / "site_evil_xyz.py", marker)
    run = _tampered(runs, tmp_path, "site_evil_xyz:X")
    message = _loads_refused(runs, run, "site_evil_xyz:X", capsys, "--trust-code")
    assert "none of mmcore's fusion modules" in message
    assert not marker.exists() and "site_evil_xyz" not in sys.modules


@pytest.mark.parametrize("raised", ["SystemExit(3)", "KeyboardInterrupt()", "GeneratorExit()",
                                    "RuntimeError('boom')"])
def test_whatever_an_import_raises_is_contained(runs, tmp_path, capsys, monkeypatch, raised):
    """A module a plugin registers (allowed without trust), or any module with trust, that
    raises while it is imported: a SpecError naming the file and the field, exit 2."""
    from mmcore.plugins.registry import Registration

    name = "site_raising_xyz"
    _site_module(tmp_path, monkeypatch, name, f"raise {raised}\n")
    run = _tampered(runs, tmp_path, f"{name}:X")
    for trust in (True, False):
        reg = runs["reg"]
        if not trust:  # a plugin registers the module: it is on the allow-list
            registration = Registration("fusion", "raising", f"{name}:X", None, "", "toy")
            monkeypatch.setitem(reg._entries["fusion"], "raising", registration)
        with pytest.raises(SpecError) as info:
            mmcore.load(run, registry=reg, trust_code=trust)
        message = str(info.value)
        assert "spec.json" in message and "fusion.name" in message
        assert type(eval(raised)).__name__ in message  # noqa: S307 - the test's own literal
        monkeypatch.delitem(sys.modules, name, raising=False)
    argv = ["evaluate", str(run), "--no-report", "--trust-code"]
    _cli_refuses(argv, capsys, "spec.json", "fusion.name", type(eval(raised)).__name__)  # noqa: S307


def test_a_builtin_module_is_not_said_to_be_inside_the_run_folder(runs, tmp_path, capsys,
                                                                   monkeypatch):
    run = _tampered(runs, tmp_path, "os:system", {"command": "true"})
    monkeypatch.chdir(run)  # origins like 'frozen' must not resolve against the cwd
    message = _loads_refused(runs, run, "os:system", capsys)
    assert "inside the run folder" not in message and "none of mmcore's" in message


def _cli_refuses(argv, capsys, *texts):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    for text in texts:
        assert text in err, err


def test_tampered_options_and_files_are_one_line_errors(runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(runs["plain"], run)
    good = json.loads((run / "spec.json").read_text())
    name = good["fusion"]["name"]
    evaluate = ["evaluate", str(run), "--no-report"]
    # an option the fusion does not take
    (run / "spec.json").write_text(json.dumps(
        {**good, "fusion": {"name": name, "options": {"__class__": 1}}}))
    _cli_refuses(evaluate, capsys, "fusion.options")
    # JSON nested far too deeply
    (run / "spec.json").write_text("[" * 100_000 + "]" * 100_000)
    _cli_refuses(evaluate, capsys, "nested too deeply")
    (run / "spec.json").write_text(json.dumps(good))
    # weights that are a device, not a file
    (run / "model.safetensors").unlink()
    (run / "model.safetensors").symlink_to("/dev/zero")
    _cli_refuses(evaluate, capsys, "not a regular file")


def test_symlinks_planted_in_a_run_folder_are_never_followed(runs, tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep me too")
    run = tmp_path / "run"
    shutil.copytree(runs["plain"], run)
    (run / ".lock").unlink(missing_ok=True)  # left by the training that made the run
    (run / ".lock").symlink_to(victim)
    spec = json.loads((run / "spec.json").read_text())
    spec_file = toy.write_spec(tmp_path / "spec.py", {
        k: v for k, v in spec.items() if k in ("data", "modalities", "fusion", "heads", "train")})
    _cli_refuses(["train", str(spec_file), "--output", str(run), "--overwrite"], capsys,
                 "lock file")
    assert victim.read_text() == "keep me"
    (run / ".lock").unlink()
    shutil.rmtree(run / "checkpoints")
    (run / "checkpoints").symlink_to(outside)
    assert main(["train", str(spec_file), "--output", str(run), "--overwrite"]) == 0
    assert (outside / "precious").read_text() == "keep me too"
    assert (run / "checkpoints").is_dir() and not (run / "checkpoints").is_symlink()
