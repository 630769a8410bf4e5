"""File paths in rows that someone else sent (``mmcore serve``, ``mmcore predict --root``):
read only inside one folder.

Inside :func:`confine` every file a modality reads through :mod:`mmcore.io` (a string path or
``{"path": ...}``) is resolved by :func:`resolve_inside`: a relative path without ``..``,
resolved with :func:`os.path.realpath` (symbolic links followed) to a regular file inside the
root. An absolute path, ``~``, ``..``, a link that leads out, a folder and a missing file are
all answered with the same message (:func:`refused`), so an answer never tells whether a
path exists outside the root. With no root every path is refused: clients send bytes.

Bytes (``{"base64": ...}`` over HTTP) are never paths and are always allowed.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from pathlib import Path


class PathRefused(ValueError):
    """A file path that is not read: outside the root, or not a file there."""


class _Confinement:
    def __init__(self, root: Path | None) -> None:
        self.root = Path(os.path.realpath(root)) if root is not None else None


_ACTIVE: contextvars.ContextVar[_Confinement | None] = contextvars.ContextVar(
    "mmcore_paths_confinement", default=None)


@contextlib.contextmanager
def confine(root: str | Path | None) -> Iterator[None]:
    """Within the block, files named in rows are read only inside ``root`` (none: no file is
    read) in this thread or task; :func:`mmcore.io.resolve_path` asks :func:`active`."""
    token = _ACTIVE.set(_Confinement(Path(root) if root is not None else None))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def active() -> _Confinement | None:
    """The confinement in force here, or ``None`` (paths resolve as the data layer's do)."""
    return _ACTIVE.get()


def refused(value: object, root: Path | None) -> PathRefused:
    """The one answer for a path refused or missing (the value as the client sent it)."""
    if root is None:
        return PathRefused(
            f"file paths are not read here ({_show(value)}): send the file's bytes "
            '({"base64": "..."})')
    return PathRefused(
        f"no file {_show(value)} under the served root: paths are relative to it, without "
        "'..', and name a file inside it")


def _show(value: object) -> str:
    text = str(value)
    return repr(text if len(text) <= 200 else text[:200] + "...")


def resolve_inside(value: str | os.PathLike[str], root: Path | None) -> Path:
    """The real path of the regular file ``value`` names inside ``root``, or
    :class:`PathRefused` (:func:`refused`'s message whatever the reason)."""
    text = os.fspath(value)
    if root is None or not isinstance(text, str) or not text or "\0" in text:
        raise refused(value, root)
    parts = text.replace(os.altsep or os.sep, os.sep).split(os.sep)
    if text.startswith("~") or os.path.isabs(text) or ".." in parts:
        raise refused(value, root)
    real = os.path.realpath(os.path.join(root, text))
    try:
        inside = os.path.commonpath([real, str(root)]) == str(root)
    except ValueError:
        inside = False
    if not inside or real == str(root) or not os.path.isfile(real):
        raise refused(value, root)
    return Path(real)
