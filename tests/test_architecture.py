"""The import layers, read from the source (no import is executed): the core imports no
plugin, the data layer nothing from training, inference (``mmcore.inference``: predict, the
runtime, the server, export) and what it shares with training (``mmcore.evaluate``,
``mmcore.strategy``) nothing from training, training and the data layer nothing from
inference, the runtime and the server nothing from the data layer either, no two modules
import each other, and no import cycle runs among mmcore's modules but the known one listed
below."""

from __future__ import annotations

import ast
import functools
from collections.abc import Mapping
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mmcore"


def _name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in PACKAGE.rglob("*.py") if "scaffold/template" not in p.as_posix()}


def _imports(module: str, typing: bool = False) -> tuple[set[str], set[str]]:
    """(modules imported at import time, modules imported anywhere), ``TYPE_CHECKING``
    blocks left out unless ``typing``; ``from package import submodule`` counts as the
    submodule."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    top: set[str] = set()
    anywhere: set[str] = set()

    def target(name: str) -> str | None:
        while name and name not in MODULES and "." in name:
            name = name.rpartition(".")[0]
        return name if name in MODULES and name != module else None

    def visit(node: ast.AST, at_import: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if (isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test)
                    and not typing):
                continue
            now = at_import and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            found: list[str] = []
            if isinstance(child, ast.Import):
                found = [alias.name for alias in child.names]
                anywhere.update(n for n in found if n.startswith("mmcore_plugin"))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parent = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*parent, base] if base else parent)
                anywhere.update([base] if base.startswith("mmcore_plugin") else [])
                subs = [f"{base}.{a.name}" for a in child.names if f"{base}.{a.name}" in MODULES]
                found = subs if len(subs) == len(child.names) else [base, *subs]
            for name in found:
                hit = target(name)
                if hit:
                    anywhere.add(hit)
                    if now:
                        top.add(hit)
            visit(child, now)

    visit(_tree(path), True)
    return top, anywhere


@functools.cache
def _tree(path: Path) -> ast.Module:
    """A module's syntax tree, parsed once for both of :func:`_imports`' readings."""
    return ast.parse(path.read_text(encoding="utf-8"))


# The graphs below are built on first use, not at collection: every test process collects
# this module, one of them runs its tests.
@functools.cache
def _graph() -> dict[str, tuple[set[str], set[str]]]:
    """module -> (what it imports at import time, what it imports anywhere)."""
    return {m: _imports(m) for m in MODULES}


@functools.cache
def _typed() -> dict[str, set[str]]:
    """module -> the modules it imports anywhere, ``TYPE_CHECKING`` blocks included."""
    return {m: _imports(m, typing=True)[1] for m in MODULES}


def _cycle_through(module: str, edges: Mapping[str, set[str]]) -> list[str]:
    """The modules on an import cycle through ``module`` in the graph ``edges``, ``module``
    included (empty when there is none)."""

    def reachable(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in edges.get(todo.pop(), set()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    return sorted(n for n in reachable(module) if module in reachable(n))


def _packages(module: str) -> set[str]:
    """The packages above ``module``: importing it runs their ``__init__`` first."""
    parts = module.split(".")
    return {p for i in range(1, len(parts)) if (p := ".".join(parts[:i])) in MODULES}


#: import edges on an import cycle not cut yet, as (importer, imported); none left (the last,
#: spec.load -> train.callbacks, went when the callback path checks moved to
#: mmcore.spec.callback_paths and spec files' modules to mmcore.spec.modules). A listed edge
#: must close a cycle (a test below fails otherwise).
KNOWN_CYCLE_EDGES: set[tuple[str, str]] = set()


@functools.cache
def _at_import() -> dict[str, set[str]]:
    """module -> what importing it runs: its imports at import time and its packages'
    ``__init__``."""
    return {m: _graph()[m][0] | _packages(m) for m in MODULES}


@functools.cache
def _everywhere() -> dict[str, set[str]]:
    """module -> every module it may import: in functions and for type checkers too, and its
    packages; the known cycle edges left out. ``mmcore``'s own ``TYPE_CHECKING`` block is its
    lazy map of public names, loaded on attribute access, not by importing a submodule."""
    return {m: {n for n in (_graph()[m][0] if m == "mmcore" else _typed()[m])
                if (m, n) not in KNOWN_CYCLE_EDGES} | _packages(m)
            for m in MODULES}


def _reach(start: str, edges: Mapping[str, set[str]] | None = None) -> set[str]:
    """Every module imported, directly or not, when ``start`` is imported (by default; with
    ``edges``: every module reachable from ``start`` along them)."""
    edges = _at_import() if edges is None else edges
    seen, todo = set(), [start]
    while todo:
        for nxt in edges[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_core_imports_no_plugin() -> None:
    offenders = {m: sorted(n for n in anywhere if n.startswith("mmcore_plugin"))
                 for m, (_, anywhere) in _graph().items()}
    assert not {m: v for m, v in offenders.items() if v}


def test_the_data_layer_imports_nothing_from_training() -> None:
    offenders = {m: sorted(n for n in anywhere if n.startswith("mmcore.train"))
                 for m, (_, anywhere) in _graph().items() if m.startswith("mmcore.data")}
    assert not {m: v for m, v in offenders.items() if v}


#: the inference home: a loaded run, prepare, export, the bundle runtime, the server
INFERENCE = sorted(m for m in MODULES if m == "mmcore.inference"
                   or m.startswith("mmcore.inference."))


def test_the_run_folder_is_beneath_training_and_inference() -> None:
    """``mmcore.run`` (layout, checkpoints, state, lock) is read by the trainer, inference and
    the CLI alike, so it imports none of them, nor the data layer."""
    offenders = {m: sorted(n for n in anywhere
                           if n.startswith(("mmcore.train", "mmcore.data", "mmcore.inference",
                                            "mmcore.cli")))
                 for m, (_, anywhere) in _graph().items() if m.startswith("mmcore.run")}
    assert len(offenders) >= 4
    assert not {m: v for m, v in offenders.items() if v}


@pytest.mark.parametrize("module", ["mmcore.inference.runtime", "mmcore.rows",
                                    "mmcore.inference.serve", "mmcore.inference.export.manifest",
                                    "mmcore.inference.export.graph_file"])
def test_serving_imports_neither_training_nor_data(module: str) -> None:
    """Nor the eager side of inference (a loaded run and ``prepare`` build their data module):
    importing the runtime or the server runs ``mmcore/inference/__init__.py``, which therefore
    imports nothing."""
    reached = _reach(module) | _graph()[module][1]
    assert not sorted(m for m in reached if m.startswith((
        "mmcore.train", "mmcore.data", "mmcore.inference.predict", "mmcore.inference.prepared")))


@pytest.mark.parametrize("layer", ["mmcore.train", "mmcore.data"])
def test_training_and_data_import_nothing_from_inference(layer: str) -> None:
    """Inference sits beside training, not beneath it: the trainer evaluates through
    ``mmcore.evaluate``, which both share, never through a loaded run or a bundle."""
    modules = [m for m in MODULES if m == layer or m.startswith(layer + ".")]
    assert len(modules) >= 10
    offenders = {m: sorted(n for n in _typed()[m] if n.startswith("mmcore.inference"))
                 for m in modules}
    assert not {m: v for m, v in offenders.items() if v}


EXPORT = sorted(m for m in MODULES if m == "mmcore.inference.export"
                or m.startswith("mmcore.inference.export."))
#: what training and inference share: imported by both, so it imports nothing from training
SHARED = ["mmcore.strategy",
          *sorted(m for m in MODULES if m == "mmcore.evaluate" or m.startswith("mmcore.evaluate."))]


@pytest.mark.parametrize("module", [*INFERENCE, "mmcore.rows", *SHARED])
def test_inference_imports_nothing_from_training(module: str) -> None:
    """Not in a function, not for type checkers, and not through any module it imports (the
    known cycle edges aside): a loaded run, a bundle and the server never need the trainer;
    what they share with it lives in ``mmcore.evaluate`` and ``mmcore.strategy``."""
    assert not sorted(m for m in _typed()[module] if m.startswith("mmcore.train"))
    assert not sorted(m for m in _reach(module, _everywhere()) if m.startswith("mmcore.train"))


def test_the_runtime_imports_export_and_not_the_reverse() -> None:
    """The runtime reads what export writes (the manifest) and runs the graph with export's
    loader, which the export's parity check uses too; nothing in ``inference/export/`` imports
    the runtime, even in a function, so importing the runtime (which runs
    ``mmcore/inference/export/__init__.py``) never comes back to it."""
    assert len(EXPORT) >= 4
    assert ({"mmcore.inference.export.manifest", "mmcore.inference.export.graph_file"}
            <= _graph()["mmcore.inference.runtime"][0])
    assert not [m for m in EXPORT if "mmcore.inference.runtime" in _reach(m, _everywhere())]


def test_no_two_modules_import_each_other() -> None:
    """At any level (a lazy import inside a function counts): a package's ``__init__``
    re-exporting its own submodules is the one allowed pair."""
    pairs = set()
    for a, (_, anywhere) in _graph().items():
        for b in anywhere:
            if a in _graph().get(b, (set(), set()))[1] and a < b:
                pairs.add((a, b))
    allowed = {(a, b) for a, b in pairs if b.startswith(a + ".")
               and MODULES[a].name == "__init__.py"}
    assert pairs - allowed == set()


# The data layer with no exception; every module, the known cycle edges aside, just below.
@pytest.mark.parametrize("layer", ["mmcore.data"])
def test_no_import_cycle_runs_through_the_layer(layer: str) -> None:
    """Not even through imports for type checkers: a ``TYPE_CHECKING`` import back up the
    chain is a module reaching into its caller, which the caller should hand it instead."""
    modules = [m for m in _typed() if m == layer or m.startswith(layer + ".")]
    assert len(modules) >= 10
    cycles = {m: cycle for m in modules if (cycle := _cycle_through(m, _typed()))}
    assert cycles == {}


def test_no_import_cycle_among_the_modules() -> None:
    """Counting imports in functions and for type checkers (see the layer test above), with
    :data:`KNOWN_CYCLE_EDGES` left out; each of those must still close a cycle, so that the
    list shrinks when one is cut."""
    edges = {m: {n for n in _typed()[m] if (m, n) not in KNOWN_CYCLE_EDGES} for m in _typed()}
    assert {m: cycle for m in MODULES if (cycle := _cycle_through(m, edges))} == {}
    for importer, imported in KNOWN_CYCLE_EDGES:
        assert importer in _cycle_through(imported, _typed()), (importer, imported)


def test_the_analysis_sees_imports() -> None:
    """A check that finds nothing because it reads nothing would pass the tests above."""
    top, anywhere = _graph()["mmcore.inference.runtime"]
    assert {"mmcore.rows", "mmcore.inference.export.manifest", "mmcore.plugins.versions"} <= top
    bundle = "mmcore.inference.export.bundle"
    assert "mmcore.evaluate.masking" in _graph()[bundle][1]  # imported in a function
    assert "mmcore.evaluate.masking" not in _graph()[bundle][0]
    assert len(INFERENCE) >= 12
    # imported for type checkers only
    data = "mmcore.data.module"
    assert "mmcore.data.loader" in _typed()[data] - _graph()[data][1]
    assert _cycle_through("a", {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}}) == ["a", "b", "c"]
    assert _cycle_through("d", {"a": {"b"}, "b": {"a", "d"}}) == []
    # importing a module runs its packages' __init__: the runtime imports export/'s
    assert _packages("mmcore.inference.export.manifest") == {
        "mmcore", "mmcore.inference", "mmcore.inference.export"}
    runtime = "mmcore.inference.runtime"
    assert bundle in _reach(runtime) - _graph()[runtime][1]
    # the export's parity check imports the graph loader in a function
    assert "mmcore.inference.export.graph_file" in _everywhere()[bundle]
    # and the bundle's loaded-run check the eager predict, in a function too
    assert "mmcore.inference.predict" in _graph()[bundle][1] - _graph()[bundle][0]
