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

import difflib
import os
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from mmcore.errors import PluginError
from mmcore.plugins import hookspecs
from mmcore.plugins.registry import PluginInfo, Registry

GROUP = "mmcore"
BUILTIN = "mmcore"
PROJECT_SPEC = hookspecs.PROJECT + "_spec"
PROJECT_IMPL = hookspecs.PROJECT + "_impl"


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
    known = [name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), PROJECT_SPEC)]
    unknown = []
    for attr in dir(module):
        obj = getattr(module, attr)
        opts = getattr(obj, PROJECT_IMPL, None) if callable(obj) else None
        hook = (opts.get("specname") if isinstance(opts, dict) else None) or attr
        if opts is not None and not attr.startswith("_") and hook not in known:
            close = difflib.get_close_matches(hook, known, n=1, cutoff=0.6)
            unknown.append(hook + (f" (did you mean {close[0]}?)" if close else ""))
    if unknown:
        return f"it implements hooks mmcore does not define: {', '.join(sorted(unknown))}"
    return None


def _exit_reason(exc: SystemExit) -> str:
    return f"it called sys.exit({exc.code!r})"


def _claimants(eps: list[EntryPoint]) -> list[str]:
    """The distinct distributions (or, lacking one, targets) declaring these entry points."""
    return sorted({ep.dist.name if ep.dist else ep.value for ep in eps})


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
    by_name: dict[str, list[EntryPoint]] = {}
    for ep in entry_points(group=GROUP):
        by_name.setdefault(ep.name, []).append(ep)
    for name, eps in sorted(by_name.items()):
        ep = eps[0]
        dist = ep.dist.name if ep.dist else None
        version = ep.dist.version if ep.dist else None
        if (only is not None and ep.name not in only) or ep.name in disabled:
            problems.append(PluginInfo(ep.name, dist, version, "disabled"))
            continue
        claimants = _claimants(eps)
        if len(claimants) > 1:
            # Loading either would let one distribution silently shadow the other.
            reason = (
                f"entry-point name {name!r} is declared by more than one distribution: "
                f"{' and '.join(claimants)}; neither is loaded. Uninstall the one you do not want."
            )
            if strict:
                raise PluginError(reason)
            problems.append(PluginInfo(name, None, None, "failed", reason))
            continue
        try:
            module = ep.load()
            invalid = _check_plugin(pm, module, ep)
            if invalid is not None:
                raise pluggy.PluginValidationError(module, invalid)
            pm.register(module, name=ep.name)
        except (Exception, SystemExit) as exc:
            if strict and isinstance(exc, SystemExit):
                raise PluginError(f"plugin {ep.name!r}: {_exit_reason(exc)} at import") from exc
            if strict:
                raise
            if isinstance(exc, pluggy.PluginValidationError):
                reason = str(exc)
            elif isinstance(exc, SystemExit):
                reason = f"import failed: {_exit_reason(exc)}"
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
