"""Finding plugins: the core's own first, then entry points of the group ``mmcore``.

Entry points are loaded one at a time, each inside its own error handling, so a broken
plugin is reported and skipped instead of stopping everything. Environment variables:

``MMCORE_PLUGINS``
    Comma-separated entry-point names to load; every other installed plugin is skipped. Set
    but empty loads no third-party plugin at all (the core's built-ins always load).
``MMCORE_DISABLE_PLUGINS``
    Comma-separated entry-point names never to load (like pytest's ``-p no:NAME``).
``MMCORE_STRICT_PLUGINS``
    ``1`` re-raises plugin errors with their traceback, for plugin authors (``--debug`` on the
    command line does the same).
"""

from __future__ import annotations

import os
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from mmcore.plugins import hookspecs
from mmcore.plugins.registry import PluginInfo, Registry

GROUP = "mmcore"
BUILTIN = "mmcore"


def _names(var: str) -> set[str] | None:
    value = os.environ.get(var)
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def strict_mode() -> bool:
    return os.environ.get("MMCORE_STRICT_PLUGINS", "").lower() in {"1", "true", "yes"}


def new_plugin_manager() -> pluggy.PluginManager:
    """A plugin manager with mmcore's hook specifications and its built-in plugin."""
    from mmcore import builtin

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(builtin, name=BUILTIN)
    return pm


def _check_plugin(pm: pluggy.PluginManager, module: Any, ep: EntryPoint) -> str | None:
    """Why a loaded plugin module is unacceptable, or ``None``."""
    declared = getattr(module, "MMCORE_API_VERSION", None)
    if declared is not None and int(str(declared).split(".")[0]) != hookspecs.API_VERSION:
        return (
            f"it declares MMCORE_API_VERSION={declared}, but this mmcore speaks plugin API "
            f"version {hookspecs.API_VERSION}; install a release of "
            f"{ep.dist.name if ep.dist else ep.name} made for it"
        )
    known = {name for name in dir(hookspecs) if not name.startswith("_")}
    prefix = hookspecs.PROJECT + "_impl"
    unknown = [
        name
        for name in dir(module)
        if not name.startswith("_")
        and callable(getattr(module, name))
        and hasattr(getattr(module, name), prefix)
        and name not in known
    ]
    if unknown:
        return f"it implements hooks mmcore does not define: {', '.join(sorted(unknown))}"
    return None


def load_entry_points(
    pm: pluggy.PluginManager, strict: bool
) -> tuple[list[PluginInfo], dict[str, tuple[str | None, str | None]]]:
    """Register every allowed entry point.

    Returns the plugins that failed or were disabled, and ``name -> (distribution, version)``
    of those registered.
    """
    only = _names("MMCORE_PLUGINS")
    disabled = _names("MMCORE_DISABLE_PLUGINS") or set()
    problems: list[PluginInfo] = []
    distributions: dict[str, tuple[str | None, str | None]] = {}
    seen: set[str] = set()
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        if ep.name in seen:
            continue
        seen.add(ep.name)
        dist = ep.dist.name if ep.dist else None
        version = ep.dist.version if ep.dist else None
        if (only is not None and ep.name not in only) or ep.name in disabled:
            problems.append(PluginInfo(ep.name, dist, version, "disabled"))
            continue
        try:
            module = ep.load()
            reason = _check_plugin(pm, module, ep)
            if reason is not None:
                raise pluggy.PluginValidationError(module, reason)
            pm.register(module, name=ep.name)
        except Exception as exc:
            if strict:
                raise
            if isinstance(exc, pluggy.PluginValidationError):
                reason = str(exc)
            else:
                reason = f"import failed: {type(exc).__name__}: {exc}"
            problems.append(PluginInfo(ep.name, dist, version, "failed", reason))
            continue
        distributions[ep.name] = (dist, version)
    return problems, distributions


def build_registry(strict: bool | None = None) -> Registry:
    """Discover plugins (honouring the environment variables above) and build the registry."""
    strict = strict_mode() if strict is None else strict
    pm = new_plugin_manager()
    problems, distributions = load_entry_points(pm, strict)
    registry = Registry(pm, strict=strict, distributions=distributions)
    for info in problems:
        registry.add_failure(info)
    return registry
