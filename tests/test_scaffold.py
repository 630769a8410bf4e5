"""``mmcore new-plugin``: the package it writes installs, registers and passes its own tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmcore.cli import main
from mmcore.scaffold import TEMPLATE


@pytest.mark.parametrize("name", ["9lives", "Depth", "depth-map", "class", "a__b", "eeg_", ""])
def test_invalid_name_exits_2(tmp_path: Path, capsys, name: str) -> None:
    assert main(["new-plugin", name, "--output", str(tmp_path)]) == 2
    assert "invalid plugin name" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_is_not_overwritten(tmp_path: Path, capsys) -> None:
    (tmp_path / "mmcore-plugin-eeg").mkdir()
    (tmp_path / "mmcore-plugin-eeg" / "keep.txt").write_text("mine")
    assert main(["new-plugin", "eeg", "--output", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "mmcore-plugin-eeg").iterdir()] == ["keep.txt"]


def test_writes_the_plugin_layout(tmp_path: Path) -> None:
    assert main(["new-plugin", "depth_map", "--output", str(tmp_path)]) == 0
    root = tmp_path / "mmcore-plugin-depth_map"
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == [
        "README.md",
        "mmcore_plugin_depth_map/__init__.py",
        "mmcore_plugin_depth_map/encoder.py",
        "mmcore_plugin_depth_map/modality.py",
        "mmcore_plugin_depth_map/options.py",
        "pyproject.toml",
        "tests/test_depth_map_contract.py",
        "tests/test_depth_map_modality.py",
    ]
    assert len(files) == len(list(TEMPLATE.rglob("*.tmpl")))
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["project"]["name"] == "mmcore-plugin-depth_map"
    assert project["project"]["entry-points"]["mmcore"] == {"depth_map": "mmcore_plugin_depth_map"}
    for path in root.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert "__PLUGIN_" not in text, path
            if path.suffix == ".py":
                compile(text, str(path), "exec")  # raises SyntaxError
    modality = (root / "mmcore_plugin_depth_map" / "modality.py").read_text()
    assert "class DepthMapModality(Modality[DepthMapOptions]):" in modality


def _run(args: list[str], cwd: Path | None = None,
         site: Path | None = None) -> subprocess.CompletedProcess:
    # one thread each: the tiny models run faster than when fighting for busy cores
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1",
           "OMP_NUM_THREADS": "1"}
    if site is not None:  # the generated plugin's own site folder, ahead of the environment's
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("kind", ["sequence", "vector"])
def test_generated_plugin_installs_and_passes_its_tests(tmp_path: Path, kind: str) -> None:
    """The generated plugin installs (into a folder of its own, so that the environment and
    tests running beside this one never see it), is found through its entry point and passes
    its own tests."""
    name = f"scaffold_{kind}"
    dist = f"mmcore-plugin-{name}"
    assert main(["new-plugin", name, "--kind", kind, "--output", str(tmp_path)]) == 0
    root, site = tmp_path / dist, tmp_path / "site"
    installed = _run([sys.executable, "-m", "pip", "install", "--no-deps",
                      "--no-build-isolation", "-q", "--target", str(site), str(root)])
    assert installed.returncode == 0, installed.stderr
    listed = _run([sys.executable, "-m", "mmcore", "plugins", "--json"], site=site)
    assert listed.returncode == 0, listed.stderr
    plugins = {p["name"]: p for p in json.loads(listed.stdout)["plugins"]}
    assert plugins[name]["status"] == "loaded", plugins[name]
    assert plugins[name]["distribution"] == dist
    assert plugins[name]["provides"] == {"modality": [name]}
    pytest_cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"]
    tests = _run(pytest_cmd, cwd=root, site=site)
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]
    assert " passed" in tests.stdout and "failed" not in tests.stdout
