"""Whether the plugins a run (or an exported bundle) recorded are installed at a compatible
version: the same major version of each distribution."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping
from pathlib import Path

from mmcore.errors import CheckpointError
from mmcore.plugins.registry import Registry
from mmcore.version import core_distribution

__all__ = ["check_plugin_versions"]


def _major(version: str) -> str:
    try:
        from packaging.version import InvalidVersion, Version

        try:
            return str(Version(version).major)
        except InvalidVersion:
            pass
    except ImportError:  # packaging is optional; the leading number is enough
        pass
    return version.split(".")[0]


def check_plugin_versions(recorded: Mapping[str, str], where: Path, registry: Registry) -> None:
    """Raise :class:`CheckpointError` naming each recorded plugin package that is not
    installed, whose plugin failed to load, or whose major version differs from the one the
    run was trained with. Versions come from the registry's loaded plugins (their
    distributions), else from the installed package metadata. The core recorded under its
    earlier name (``mmcore``, by runs before it was renamed) is checked as the core."""
    infos = [info for info in registry.plugins.values() if info.distribution]
    problems: list[str] = []
    for name, version in recorded.items():
        dist = core_distribution(name)
        mine = [info for info in infos if info.distribution == dist]
        loaded = [info for info in mine if info.status == "loaded"]
        hint = f"pip install '{dist}=={version}'" if version != "unknown" else f"pip install {dist}"
        if loaded:
            installed = loaded[0].version
        elif mine:
            info = mine[0]
            reason = info.error or info.status
            problems.append(f"{dist}: its plugin {info.name!r} is {info.status} ({reason})")
            continue
        else:
            try:
                installed = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                problems.append(f"{dist} is not installed ({hint})")
                continue
        if installed and version != "unknown" and _major(installed) != _major(version):
            problems.append(
                f"{dist} {installed} is installed but the run was trained with {version}, "
                f"a different major version ({hint})"
            )
    if problems:
        raise CheckpointError(
            f"{where}: the run needs plugins that are missing or incompatible:\n  "
            + "\n  ".join(problems)
        )
