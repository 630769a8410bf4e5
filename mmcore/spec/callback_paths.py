"""Callbacks a spec names by import path (``train.callbacks: ["package.module:Class"]``):
whether such a path may be imported (a ``spec.json`` is data: :mod:`mmcore.spec.trust`'s rules)
and whether what it names is a callback class. Part of checking a spec, so it sits beside the
spec's other checks and imports nothing of the trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmcore.errors import PluginError, SpecError
from mmcore.plugins import hookspecs
from mmcore.plugins.hookspecs import EVENT_HOOKS
from mmcore.plugins.registry import Registry, import_object


def callback_class(path: str) -> type:
    """The callback class ``"package.module:Class"`` names, imported now. Raises
    :class:`PluginError` unless it is a class with at least one trainer event marked
    ``@mmcore.hookimpl``. Whether it may be imported at all is the spec check's business
    (:func:`check_callback_path`)."""
    module_part = path.partition(":")[0]
    if module_part.endswith(".py"):
        raise PluginError(
            f"callback {path!r}: a file path is not an import path; put the class in a module "
            "beside the spec file (its folder is importable) and name it 'module:Class'"
        )
    try:
        cls = import_object(path)
    except (Exception, SystemExit) as exc:  # the user's module: report, never exit for it
        raise PluginError(
            f"callback {path!r} cannot be imported: {type(exc).__name__}: {exc}"
        ) from None
    if not (isinstance(cls, type) and any(is_event(getattr(cls, h, None)) for h in EVENT_HOOKS)):
        raise PluginError(
            f"callback {path!r} is not a callback class: expected a class with at least one "
            f"of {', '.join(EVENT_HOOKS)} marked @mmcore.hookimpl"
        )
    return cls


def check_callback_path(
    name: str,
    folder: str | Path | None,
    *,
    data: bool | None = None,
    trust_code: bool = False,
    source: str = "spec.json",
    field: str = "train.callbacks",
    registry: Registry | None = None,
) -> type:
    """The callback class a ``train.callbacks`` entry ``"package.module:Class"`` names.

    ``folder`` is where the spec was read from when it is data (a ``spec.json``, e.g. a run
    folder's); ``None`` for a Python spec file or a spec built in Python, which are the
    user's code (the class is imported like a fusion class of theirs), and for JSON data
    read from no folder with ``data=True`` (``spec_from_json`` without ``base_dir``). From
    data the module is checked as fusion modules are (see :mod:`mmcore.spec.trust`) before
    anything is imported. Raises :class:`SpecError` naming ``field``, for a refusal or a
    class that is no callback."""
    from mmcore.spec.trust import SPEC_JSON_TRUST_HINT, import_checked

    def refuse(why: str) -> SpecError:
        return SpecError(source, [(field, f"{name!r} refused: {why}")])

    if data is None:  # by default a folder is where data came from
        data = folder is not None
    if data:
        if name.partition(":")[0].endswith(".py"):
            raise refuse("it is a Python file path; a spec.json is data, not code")
        import_checked(name, Path(folder).resolve() if folder is not None else None,
                       trust_code=trust_code, registry=registry, refuse=refuse,
                       what="callback", hint=SPEC_JSON_TRUST_HINT)
    try:
        return callback_class(name)
    except PluginError as exc:
        raise SpecError(source, [(field, str(exc))]) from None


def is_event(method: Any) -> bool:
    """Whether ``method`` is marked ``@mmcore.hookimpl``."""
    return getattr(method, f"{hookspecs.PROJECT}_impl", None) is not None
