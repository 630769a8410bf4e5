"""Spec files as modules: executing a Python spec file (its folder importable, its exit or
interrupt turned into a :class:`~mmcore.errors.SpecError`) and resolving the fusion class a
spec names. Imports nothing else of :mod:`mmcore.spec`, so the trust checks can use it."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from mmcore.errors import SpecError
from mmcore.plugins.registry import import_object

SPEC_MODULE_PREFIX = "_mmcore_spec_"
#: The name under which a run folder keeps a copy of the spec file that defined classes.
SPEC_COPY = "spec.py"


def load_module(path: Path) -> ModuleType:
    """Execute a Python file as a module (kept in ``sys.modules`` so its classes pickle).

    The file's folder is put on ``sys.path`` (as ``python file.py`` would), so a spec can import
    modules that sit beside it and name classes in them by ``"module:Class"``.
    """
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    name = f"{SPEC_MODULE_PREFIX}{digest}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    with _ctrl_c_noted() as ctrl_c:
        try:
            module_spec.loader.exec_module(module)
        except BaseException as exc:
            sys.modules.pop(name, None)
            if isinstance(exc, Exception) or (isinstance(exc, KeyboardInterrupt) and ctrl_c):
                raise  # an error load_spec reports, or a real Ctrl-C: stop as usual
            raise SpecError(str(path), [("", _exit_reason(path, exc))]) from None
    return module


def _exit_reason(path: Path, exc: BaseException) -> str:
    """Why a spec file that raised ``exc`` (not an ``Exception``: ``sys.exit()``,
    ``KeyboardInterrupt``, ``GeneratorExit``, a ``BaseException`` subclass) is refused.
    Unchecked, they would end the whole command with a traceback or the file's exit code."""
    if isinstance(exc, SystemExit):
        return (f"{path.name} called sys.exit({exc.code!r}) while it was being read; "
                "a spec file must define `spec`, not exit")
    detail = f": {exc}" if str(exc) else ""
    return (f"running the spec file raised {type(exc).__name__}{detail}; a spec file must "
            "define `spec`, not raise")


@contextlib.contextmanager
def _ctrl_c_noted() -> Iterator[list[bool]]:
    """Yields a list that holds ``True`` once SIGINT arrived (a real Ctrl-C, not a
    ``KeyboardInterrupt`` the file raised). SIGINT still raises ``KeyboardInterrupt``; the
    handler is only swapped in the main thread while Python's default one is installed."""
    pressed: list[bool] = []
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.getsignal(signal.SIGINT)

    def noted(signum: int, frame: Any) -> None:
        pressed.append(True)
        signal.default_int_handler(signum, frame)

    if previous is signal.default_int_handler:
        signal.signal(signal.SIGINT, noted)
    try:
        yield pressed
    finally:
        if previous is signal.default_int_handler:
            signal.signal(signal.SIGINT, previous)


def resolve_fusion_class(name: str | type, base_dir: str | Path | None) -> type:
    """A ``Fusion`` subclass from a class, ``"module:Class"`` or ``"file.py:Class"`` path."""
    if isinstance(name, type):
        return name
    module_part, _, attr = name.partition(":")
    if module_part.endswith(".py"):
        file = Path(module_part)
        if not file.is_absolute() and base_dir is not None:
            file = Path(base_dir) / file
        return getattr(load_module(file), attr)
    return import_object(name)
