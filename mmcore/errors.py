"""Errors written for users: what was wrong, where, what was expected."""

from __future__ import annotations

from typing import Any


class MmcoreError(Exception):
    """Base of every error mmcore reports to users; the CLI prints it and exits with code 2."""


class PluginError(MmcoreError):
    """A plugin could not be loaded, clashes with another, or a name is not registered."""


class SpecError(MmcoreError):
    """A spec is invalid. ``problems`` lists ``(field path, message)`` pairs."""

    #: the arguments of the ``mmcore.Spec(...)`` call that failed, when it was one
    raw: dict[str, Any] | None = None

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"invalid spec {source}:"]
        lines += [f"  {path}: {message}" if path else f"  {message}" for path, message in problems]
        super().__init__("\n".join(lines))


class DataError(MmcoreError):
    """Bad data: names the split, row, column and what was expected."""


class TrainingError(MmcoreError):
    """Training cannot go on (e.g. a non-finite loss); the last good checkpoint is intact."""


class CheckpointError(MmcoreError):
    """A run folder or checkpoint is missing, incomplete or incompatible."""
