"""Issue 29: the core is distributed as ``mmcore-torch`` (the name ``mmcore`` on PyPI belongs to
an unrelated project), and everything that depends on it names that distribution."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mmcore.errors import CheckpointError
from mmcore.plugins.discovery import new_plugin_manager
from mmcore.plugins.registry import Registry
from mmcore.plugins.versions import check_plugin_versions
from mmcore.scaffold import TEMPLATE, placeholders, render
from mmcore.version import DISTRIBUTION, __version__, with_core_distribution

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_PROJECTS = sorted(ROOT.glob("plugins/*/pyproject.toml"))
#: text whose code blocks or prose may tell people what to install
DOCS = sorted([ROOT / "README.md", *ROOT.glob("docs/**/*.md"), *ROOT.glob("plugins/*/README.md"),
               *ROOT.glob("examples/**/*.md"), *ROOT.glob("mmcore/scaffold/template*/**/*.tmpl")])
SOURCES = sorted({*ROOT.glob("mmcore/**/*.py"), *ROOT.glob("tests/*.py"),
                  *ROOT.glob("plugins/*/mmcore_plugin_*/**/*.py")} - {Path(__file__).resolve()})


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _name(requirement: str) -> str:
    """The distribution a PEP 508 requirement names."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return _canonical(match.group(1))


def _requirements(project: dict) -> list[str]:
    table = project.get("project", {})
    extras = table.get("optional-dependencies", {}).values()
    return [*table.get("dependencies", []), *(r for group in extras for r in group)]


def _scaffold_project() -> dict:
    text = (TEMPLATE / "pyproject.toml.tmpl").read_text()
    return tomllib.loads(render(text, placeholders("depth_map")))


def test_the_core_distribution_is_the_one_the_root_project_declares() -> None:
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert root["project"]["name"] == DISTRIBUTION == "mmcore-torch"
    assert root["project"]["version"] == __version__
    assert root["project"]["scripts"] == {"mmcore": "mmcore.cli:main"}  # the command stays
    assert "mmcore" not in {_name(r) for r in _requirements(root)}


@pytest.mark.parametrize("path", PLUGIN_PROJECTS, ids=lambda p: p.parent.name)
def test_every_plugin_depends_on_the_core_distribution(path: Path) -> None:
    core = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
    project = tomllib.loads(path.read_text())
    assert project["project"]["name"] == path.parent.name  # mmcore-plugin-<x>
    names = [_name(r) for r in _requirements(project)]
    assert _canonical(core) in names, f"{path} does not depend on {core}"
    assert "mmcore" not in names, f"{path} depends on 'mmcore', an unrelated PyPI project"


def test_the_scaffold_template_depends_on_the_core_distribution() -> None:
    names = [_name(r) for r in _requirements(_scaffold_project())]
    assert DISTRIBUTION in names and "mmcore" not in names


def test_plugin_projects_were_found() -> None:
    assert len(PLUGIN_PROJECTS) >= 7


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_never_install_or_depend_on_a_bare_mmcore(path: Path) -> None:
    text = path.read_text()
    # `pip install mmcore`, `pip install 'mmcore[serve]'`: the unrelated project
    bare = re.findall(r"pip install ['\"]?mmcore(?![\w-])\S*", text)
    assert not bare, f"{path}: {bare} (the core is {DISTRIBUTION})"
    for block in re.findall(r"```toml\n(.*?)```", text, flags=re.S):
        names = [_name(r) for r in _requirements(tomllib.loads(block))]
        assert "mmcore" not in names, f"{path}: a toml block depends on 'mmcore'"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_install_hints_in_the_code_name_the_core_distribution(path: Path) -> None:
    bare = re.findall(r"pip install ['\"]?mmcore(?![\w-])\S*|['\"]mmcore\[\w", path.read_text())
    assert not bare, f"{path}: {bare} (the core is {DISTRIBUTION})"


def test_the_readme_says_what_to_install() -> None:
    readme = (ROOT / "README.md").read_text()
    assert f"pip install {DISTRIBUTION}" in readme


def test_runs_recorded_under_the_old_name_still_load() -> None:
    """Runs and bundles written before the rename record the core as ``mmcore``: it is read as
    the core (never looked up as an installed package, which could be the unrelated one)."""
    registry = Registry(new_plugin_manager())
    where = Path("runs/old/spec.json")
    check_plugin_versions({"mmcore": __version__}, where, registry)
    check_plugin_versions({DISTRIBUTION: __version__}, where, registry)
    with pytest.raises(CheckpointError, match=f"{DISTRIBUTION} {__version__} is installed but "
                       "the run was trained with 99.0.0"):
        check_plugin_versions({"mmcore": "99.0.0"}, where, registry)
    recorded = {"mmcore": "0.1.0", "mmcore-plugin-audio": "0.1.0"}
    assert with_core_distribution(recorded) == {DISTRIBUTION: "0.1.0",
                                                "mmcore-plugin-audio": "0.1.0"}


def test_the_builtin_plugin_is_registered_under_the_core_distribution() -> None:
    registry = Registry(new_plugin_manager())
    core = registry.plugins["mmcore"]
    assert (core.distribution, core.version) == (DISTRIBUTION, __version__)
