"""The process-wide registry: plugins discovered once, on first use (not at import).

Kept apart from :mod:`mmcore.plugins.registry` (the data structure) and
:mod:`mmcore.plugins.discovery` (which builds one), so that neither imports the other back.
"""

from __future__ import annotations

from mmcore.plugins.discovery import build_registry
from mmcore.plugins.registry import Registry

__all__ = ["get_registry", "reset_registry"]

_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, discovering plugins on first use (not at import)."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = build_registry()
    return _REGISTRY


def reset_registry(registry: Registry | None = None) -> None:
    """Forget (or replace) the process-wide registry; tests use this after installing plugins."""
    global _REGISTRY
    _REGISTRY = registry
