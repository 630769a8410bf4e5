"""The registry of names: which plugin provides which modality, fusion, head and callback."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import pluggy

from mmcore.errors import PluginError
from mmcore.version import DISTRIBUTION, __version__

Kind = Literal["modality", "fusion", "head", "callback"]
KINDS: tuple[Kind, ...] = ("modality", "fusion", "head", "callback")
HOOK_FOR_KIND: dict[Kind, str] = {
    "modality": "register_modalities",
    "fusion": "register_fusions",
    "head": "register_heads",
    "callback": "register_callbacks",
}


def import_object(path: str) -> Any:
    """Import ``"package.module:attr"`` (or ``"package.module.attr"``)."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ImportError(f"{path!r} is not an import path of the form 'package.module:Name'")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class PluginInfo:
    """One loaded (or failed) plugin, as ``mmcore plugins`` shows it."""

    name: str
    distribution: str | None = None
    version: str | None = None
    status: Literal["loaded", "failed", "disabled"] = "loaded"
    error: str | None = None
    provides: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Registration:
    """A name a plugin registered, with its lazily imported implementation and options."""

    kind: Kind
    name: str
    impl: str | type
    options: str | type | None
    description: str
    plugin: str
    distribution: str | None = None
    version: str | None = None

    def load(self) -> Any:
        """The implementing class (imported now if registered by path)."""
        if not isinstance(self.impl, str):
            return self.impl
        try:
            return import_object(self.impl)
        except (Exception, SystemExit) as exc:  # name the broken plugin; never exit for it
            raise PluginError(
                f"{self.kind} {self.name!r} from plugin {self.plugin!r} "
                f"({self.distribution or 'unknown distribution'}) failed to import "
                f"{self.impl!r}: {type(exc).__name__}: {exc}"
            ) from exc

    def load_options(self) -> type | None:
        """The pydantic options model, or ``None`` when the implementation takes none."""
        if self.options is None or not isinstance(self.options, str):
            return self.options
        return import_object(self.options)


def _recorder(
    into: list[Registration], kind: Kind, plugin: str, dist: str | None, version: str | None
) -> Callable[..., None]:
    """The ``register`` callable handed to one plugin's registration hook."""

    def register(
        name: str, impl: str | type, options: str | type | None = None, description: str = ""
    ) -> None:
        into.append(
            Registration(kind, str(name), impl, options, description, plugin, dist, version)
        )

    return register


def install_hint(kind: Kind, name: str) -> str:
    if kind == "modality":
        return f"pip install mmcore-plugin-{name}"
    return f"install the plugin that provides {kind} {name!r}"


class Registry:
    """Names registered by plugins through the ``register_*`` hooks.

    Built from a pluggy ``PluginManager``; each plugin's registration hooks run inside their
    own error handling, and a plugin whose hook raises is left out whole.
    """

    def __init__(
        self,
        pm: pluggy.PluginManager,
        strict: bool = False,
        distributions: dict[str, tuple[str | None, str | None]] | None = None,
    ):
        self.pm = pm
        self._distributions = {"mmcore": (DISTRIBUTION, __version__), **(distributions or {})}
        self.strict = strict
        self.plugins: dict[str, PluginInfo] = {}
        self._entries: dict[Kind, dict[str, Registration]] = {k: {} for k in KINDS}
        self._clashes: dict[tuple[Kind, str], list[Registration]] = {}
        self._failed_names: dict[tuple[Kind, str], str] = {}
        self._collect()

    # -- building -----------------------------------------------------------------------
    def _collect(self) -> None:
        for plugin_name, plugin in self.pm.list_name_plugin():
            if plugin is None:  # blocked
                continue
            dist, version = self._distributions.get(plugin_name, (None, None))
            collected: list[Registration] = []
            try:
                for kind in KINDS:
                    for impl in getattr(self.pm.hook, HOOK_FOR_KIND[kind]).get_hookimpls():
                        if impl.plugin is plugin:
                            impl.function(
                                register=_recorder(collected, kind, plugin_name, dist, version)
                            )
            except (Exception, SystemExit) as exc:
                if self.strict and isinstance(exc, SystemExit):
                    raise PluginError(
                        f"plugin {plugin_name!r}: a registration hook called sys.exit({exc.code!r})"
                    ) from exc
                if self.strict:
                    raise
                if isinstance(exc, SystemExit):
                    reason = f"registration hook called sys.exit({exc.code!r})"
                else:
                    reason = f"registration hook raised {type(exc).__name__}: {exc}"
                self.plugins[plugin_name] = PluginInfo(plugin_name, dist, version, "failed", reason)
                for reg in collected:
                    self._failed_names[(reg.kind, reg.name)] = plugin_name
                continue
            provides: dict[str, list[str]] = {}
            for reg in collected:
                self._add(reg)
                provides.setdefault(reg.kind, []).append(reg.name)
            self.plugins[plugin_name] = PluginInfo(plugin_name, dist, version, provides=provides)

    def _add(self, reg: Registration) -> None:
        key = (reg.kind, reg.name)
        if key in self._clashes:
            self._clashes[key].append(reg)
            return
        existing = self._entries[reg.kind].get(reg.name)
        if existing is not None:
            self._clashes[key] = [existing, reg]
            del self._entries[reg.kind][reg.name]
            return
        self._entries[reg.kind][reg.name] = reg

    def add_failure(self, info: PluginInfo) -> None:
        """Record a plugin that could not be loaded at all (import error, bad API version)."""
        self.plugins[info.name] = info

    # -- lookup -------------------------------------------------------------------------
    def names(self, kind: Kind) -> list[str]:
        return sorted(self._entries[kind])

    def entries(self, kind: Kind) -> list[Registration]:
        return [self._entries[kind][n] for n in self.names(kind)]

    def clashes(self) -> dict[tuple[Kind, str], list[Registration]]:
        return dict(self._clashes)

    def get(self, kind: Kind, name: str) -> Registration:
        """The registration of ``name``, or a :class:`PluginError` that says how to get it."""
        if name in self._entries[kind]:
            return self._entries[kind][name]
        if (kind, name) in self._clashes:
            who = " and ".join(
                f"{r.distribution or r.plugin} (plugin {r.plugin!r})"
                for r in self._clashes[kind, name]
            )
            raise PluginError(
                f"{kind} {name!r} is registered by more than one plugin: {who}. "
                f"Uninstall one, or disable one with MMCORE_DISABLE_PLUGINS=<plugin name>."
            )
        if (kind, name) in self._failed_names:
            plugin = self._failed_names[kind, name]
            raise PluginError(
                f"{kind} {name!r} comes from plugin {plugin!r}, which failed to load: "
                f"{self.plugins[plugin].error}"
            )
        for info in self.plugins.values():
            if info.status == "failed" and info.name == name:
                raise PluginError(
                    f"{kind} {name!r} may come from plugin {name!r}, which failed to load: "
                    f"{info.error}"
                )
        raise PluginError(self.unknown_message(kind, name))

    def unknown_message(self, kind: Kind, name: str) -> str:
        known = self.names(kind)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        msg = f"unknown {kind} {name!r}."
        if close:
            msg = msg[:-1] + f"; did you mean {' or '.join(repr(c) for c in close)}?"
        msg += f" Registered: {', '.join(known) or 'none'}."
        if not close:
            msg += f" If it comes from a plugin, install it ({install_hint(kind, name)})."
        failed = [p.name for p in self.plugins.values() if p.status == "failed"]
        if failed:
            msg += f" Note: plugin(s) {', '.join(failed)} failed to load (see `mmcore plugins`)."
        return msg
