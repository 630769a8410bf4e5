"""The plugin system: hook specifications, entry-point discovery and the name registry."""

from mmcore.plugins.default import get_registry, reset_registry
from mmcore.plugins.hookspecs import hookimpl, hookspec
from mmcore.plugins.registry import Registration, Registry

__all__ = ["Registration", "Registry", "get_registry", "hookimpl", "hookspec", "reset_registry"]
