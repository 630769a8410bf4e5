"""How callbacks are wired: named, imported, created and registered in a trainer's relay.

A callback is a class registered under a name with the ``register_callbacks`` hook, or named
in ``train.callbacks`` by its import path ``"package.module:Class"`` (checked by
:mod:`mmcore.spec.callback_paths` under the trust rules of :mod:`mmcore.spec.trust`); the trainer
instantiates the ones named (no arguments) and registers each instance in a trainer-local
pluggy ``PluginManager`` with mmcore's hook specifications. Plugins' module-level
implementations of the trainer events are called as well."""

from __future__ import annotations

from collections.abc import Callable, Collection

import pluggy

from mmcore.errors import PluginError
from mmcore.plugins import hookspecs
from mmcore.plugins.hookspecs import EVENT_HOOKS
from mmcore.plugins.registry import Registry
from mmcore.spec.callback_paths import callback_class, is_event
from mmcore.train.trackers.base import Tracker


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
        if plugin is None or not any(is_event(getattr(plugin, h, None)) for h in EVENT_HOOKS):
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
