"""Servers that a test starts on a port of its own: a port found free can be taken by another
process before the server binds it, so a server that says so is started again on another."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
#: how a server says its port was taken: uvicorn, gunicorn, PostgreSQL and Python's OSError
TAKEN = "address already in use"


class PortTaken(Exception):
    """Raised by a ``start`` function whose server could not bind its port (its message: the
    port and the end of what the server said)."""


def free_port() -> int:
    """A port nothing listens on at this moment."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def taken(output: str) -> bool:
    """Whether a server's output says that its port was taken."""
    return TAKEN in output.lower()


def on_a_free_port(start: Callable[[int], T], tries: int = 3) -> T:
    """``start(port)`` on a free port; on :class:`PortTaken`, again on another, ``tries`` (at
    least 1) times in all (the last failure is raised)."""
    for _ in range(tries - 1):
        try:
            return start(free_port())
        except PortTaken:
            pass
    return start(free_port())
