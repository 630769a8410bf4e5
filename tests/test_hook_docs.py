"""Every hook in ``mmcore/plugins/hookspecs.py`` is documented with its exact signature and
exercised by a test (as datasette's ``test_plugin_hooks_are_documented`` and
``test_plugin_hooks_have_tests`` do).

Adding a hook without a row in the hooks table of ``docs/plugin-system.md`` or without a test
that implements or calls it fails here, and so does a table row left behind by a renamed or
deleted hook; a trainer event (``on_*``) must also be named with its signature in the callbacks
section of ``docs/training.md``, where a user writing a callback reads.
"""

from __future__ import annotations

import ast
import functools
import inspect
import re
from pathlib import Path

import pytest

from mmcore.plugins import hookspecs
from mmcore.plugins.discovery import new_plugin_manager

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "plugin-system.md"
TRAINING = REPO / "docs" / "training.md"
TESTS = REPO / "tests"
#: a row of the hooks table: its first cell is the hook's call signature in backticks
ROW = re.compile(r"^\|\s*`(\w+)\(([^)`]*)\)`\s*\|", re.M)


def _hooks() -> dict[str, str]:
    """Hook name -> its argument names as the docs write them (``"trainer, epoch, metrics"``),
    read from the specifications themselves."""
    marker = f"{hookspecs.PROJECT}_spec"  # the attribute pluggy's HookspecMarker sets
    return {
        name: ", ".join(inspect.signature(function).parameters)
        for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
        if getattr(function, marker, None) is not None
    }


HOOKS = _hooks()


@functools.cache
def _documented() -> dict[str, list[str]]:
    """Hook name -> the argument lists of its rows in the ``## Hooks`` section of the page."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index("\n## Hooks\n")
    end = text.find("\n## ", start + 1)
    section = text[start:end if end != -1 else len(text)]
    found: dict[str, list[str]] = {}
    for name, args in ROW.findall(section):
        names = [a.strip() for a in args.split(",") if a.strip()]
        found.setdefault(name, []).append(", ".join(names))
    return found


def _decorator_name(node: ast.expr) -> str:
    return ast.unparse(node.func if isinstance(node, ast.Call) else node)


def _is_hook_call(func: ast.expr) -> bool:
    """``<anything>.hook.<name>``: a call through a pluggy manager's hook relay."""
    return (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Attribute)
            and func.value.attr == "hook")


@functools.cache
def _exercised() -> dict[str, list[str]]:
    """Hook name -> where a test module implements it (a function of that name marked with a
    ``hookimpl``) or calls it (``<manager>.hook.<name>(...)``), as ``file:line``."""
    places: dict[str, list[str]] = {}
    for path in sorted(TESTS.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            name = None
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and any(
                _decorator_name(d).split(".")[-1] == "hookimpl" for d in node.decorator_list
            ):
                name = node.name
            elif isinstance(node, ast.Call) and _is_hook_call(node.func):
                name = node.func.attr  # type: ignore[attr-defined]
            if name in HOOKS:
                places.setdefault(name, []).append(f"{path.relative_to(REPO)}:{node.lineno}")
    return places


def test_the_specifications_are_what_the_plugin_manager_serves() -> None:
    """Reading the module with ``inspect`` sees every hook pluggy knows, and nothing else."""
    pm = new_plugin_manager()
    served = {name for name in dir(pm.hook) if not name.startswith("_")}
    assert set(HOOKS) == served
    assert len(HOOKS) >= 8  # the four registrations and the four trainer events


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_hook_is_documented_with_its_signature(hook: str) -> None:
    documented = _documented()
    expected = f"`{hook}({HOOKS[hook]})`"
    assert hook in documented, (
        f"{hook} is not in the hooks table of {DOC.relative_to(REPO)}; add a row starting "
        f"with | {expected} |"
    )
    assert documented[hook] == [HOOKS[hook]], (
        f"{DOC.relative_to(REPO)} documents {hook} as "
        f"{', '.join(f'`{hook}({args})`' for args in documented[hook])}; its signature is "
        f"{expected}"
    )


def test_every_documented_hook_exists() -> None:
    """A row left behind by a renamed or deleted hook would document a hook no plugin can
    implement (mmcore refuses a plugin that implements an unknown hook)."""
    stale = sorted(set(_documented()) - set(HOOKS))
    assert not stale, f"{DOC.relative_to(REPO)} documents hooks that do not exist: {stale}"


def _section(path: Path, title: str) -> str:
    """The ``## title`` section of a page, its whitespace runs made single spaces."""
    text = path.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return " ".join(text[start:end if end != -1 else len(text)].split())


@pytest.mark.parametrize("hook", sorted(h for h in HOOKS if h.startswith("on_")))
def test_trainer_event_is_named_in_the_callbacks_section_of_training_md(hook: str) -> None:
    expected = f"`{hook}({HOOKS[hook]})`"
    assert expected in _section(TRAINING, "Callbacks"), (
        f"the callbacks section of {TRAINING.relative_to(REPO)} does not name the trainer "
        f"event {expected}"
    )


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_hook_is_exercised_by_a_test(hook: str) -> None:
    places = _exercised().get(hook, [])
    assert places, (
        f"no test implements {hook} (a function of that name marked with @mmcore.hookimpl) "
        f"or calls it (pm.hook.{hook}(...)) under tests/"
    )


def test_the_checks_see_documentation_and_tests() -> None:
    """The checks above would pass vacuously if their readers found nothing."""
    assert set(_documented()) == set(HOOKS)
    places = _exercised()
    assert any("test_train_run.py" in p for p in places["on_checkpoint_saved"])  # a Recorder
    assert any("test_train_units.py" in p for p in places["on_train_end"])  # pm.hook call
