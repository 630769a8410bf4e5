"""How callbacks are wired: named, imported, created and registered in a trainer's relay.

A callback is a class registered under a name with the ``register_callbacks`` hook, or named
in ``train.callbacks`` by its import path ``"package.module:Class"`` (checked by
:func:`check_callback_path` under the trust rules of :mod:`mmcore.spec.trust`); the trainer
instantiates the ones named (no arguments) and registers each instance in a trainer-local
pluggy ``PluginManager`` with mmcore's hook specifications. Plugins' module-level
implementations of the trainer events are called as well."""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import pluggy

from mmcore.errors import PluginError, SpecError
from mmcore.plugins import hookspecs
from mmcore.plugins.registry import Registry, import_object
from mmcore.train.trackers.base import Tracker

#: the trainer-event hooks; plugins' implementations of other hooks are not called here
EVENT_HOOKS = ("on_train_start", "on_train_epoch_start", "on_train_batch_end",
               "on_validation_end", "on_epoch_end", "on_checkpoint_saved", "on_train_end",
               "on_exception")


def callback_manager(names: list[str], registry: Registry,
                     skip: Collection[str] = ()) -> pluggy.PluginManager:
    """A plugin manager holding one instance of each named callback plus every loaded
    plugin that implements a trainer event. Names in ``skip`` are left to the caller to
    register (the built-ins whose order matters; they still count in ``train.callbacks.N``).

    Raises :class:`PluginError` naming ``train.callbacks.N`` for an unknown name, a class
    that cannot be imported or created, or a callback whose optional dependency is missing.
    A :class:`~mmcore.train.trackers.Tracker` learns its field, for its own messages.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name, plugin in registry.pm.list_name_plugin():
        if plugin is None or not any(_is_event(getattr(plugin, h, None)) for h in EVENT_HOOKS):
            continue
        pm.register(plugin, name=f"plugin:{name}")
    for i, name in enumerate(names):
        if name in skip:
            continue
        field = f"train.callbacks.{i}"
        try:
            cls = callback_class(name) if ":" in name else registry.get("callback", name).load()
            instance = cls()
        except PluginError as exc:
            message = str(exc)
            raise PluginError(
                message if message.startswith(field) else f"{field}: {message}"
            ) from None
        except Exception as exc:
            raise PluginError(
                f"{field}: callback {name!r} could not be created: {type(exc).__name__}: {exc}"
            ) from exc
        if isinstance(instance, Tracker):
            instance.field = field
        pm.register(instance, name=f"callback:{name}:{i}")
    return pm


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
    if not (isinstance(cls, type) and any(_is_event(getattr(cls, h, None)) for h in EVENT_HOOKS)):
        raise PluginError(
            f"callback {path!r} is not a callback class: expected a class with at least one "
            f"of {', '.join(EVENT_HOOKS)} marked @mmcore.hookimpl"
        )
    return cls


def check_callback_path(
    name: str,
    folder: str | Path | None,
    *,
    trust_code: bool = False,
    source: str = "spec.json",
    field: str = "train.callbacks",
    registry: Registry | None = None,
) -> type:
    """The callback class a ``train.callbacks`` entry ``"package.module:Class"`` names.

    ``folder`` is where the spec was read from when it is data (a ``spec.json``, e.g. a run
    folder's); ``None`` for a Python spec file or a spec built in Python, which are the
    user's code (the class is imported like a fusion class of theirs). From data the module
    is checked as fusion modules are (see :mod:`mmcore.spec.trust`) before anything is
    imported. Raises :class:`SpecError` naming ``field``, for a refusal or a class that is
    no callback."""
    from mmcore.spec.trust import CALLBACK_TRUST_HINT, import_checked

    def refuse(why: str) -> SpecError:
        return SpecError(source, [(field, f"{name!r} refused: {why}")])

    if folder is not None:
        if name.partition(":")[0].endswith(".py"):
            raise refuse("it is a Python file path; a spec.json is data, not code")
        import_checked(name, Path(folder).resolve(), trust_code=trust_code, registry=registry,
                       refuse=refuse, what="callback", hint=CALLBACK_TRUST_HINT)
    try:
        return callback_class(name)
    except PluginError as exc:
        raise SpecError(source, [(field, str(exc))]) from None


def _is_event(method: Any) -> bool:
    return getattr(method, f"{hookspecs.PROJECT}_impl", None) is not None


def silent_hooks() -> pluggy.PluginManager:
    """A trainer-event hook relay with no implementations: ranks other than 0 call no
    callbacks (they would log, write and notify once per rank)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def per_batch(hooks: pluggy.PluginManager, event: str) -> Callable[..., object]:
    """The relay's ``event`` for a loop over batches: the hook, or a function that does
    nothing when no callback implements it, so that the event then costs nothing measurable
    (pluggy's call of no implementation takes 1 to 2 µs)."""
    caller = getattr(hooks.hook, event)
    return caller if caller.get_hookimpls() else _nothing


def _nothing(**event: object) -> None:
    pass
