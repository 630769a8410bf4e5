"""An advisory lock on a run folder, so that two trainings never write one folder.

The lock is ``flock(LOCK_EX | LOCK_NB)`` on ``<run>/.lock``, held by the training process
(rank 0 in a distributed run) for the whole run. The kernel releases it when the process
exits, however it exits (an exception, SIGTERM, SIGKILL), so a ``.lock`` file left behind by a
dead process is simply taken over. The file holds the holder's pid, host and start time for
the message the next writer gets. Where ``fcntl`` is missing (Windows) there is no lock.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from mmcore.errors import CheckpointError

try:
    import fcntl
except ImportError:  # Windows: no advisory lock; two writers are not caught there
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"


class RunLock:
    """``RunLock(folder).acquire()`` or :class:`CheckpointError` naming the holder;
    ``release()`` (also on garbage collection and process exit)."""

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        if fcntl is None or self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:  # O_NOFOLLOW: a planted .lock symlink must not make us write through it
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as exc:
            raise CheckpointError(
                f"{self.path}: cannot open the run folder's lock file ({exc.strerror or exc}); "
                "if it is a symbolic link, remove it"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _describe(fd)
            os.close(fd)
            raise CheckpointError(
                f"{self.path.parent} is being written by another training ({holder}); wait for "
                "it to finish, stop it, or choose another --output"
            ) from None
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            # The file stays: unlinking it would let a third process lock a new inode while a
            # second still waits on the old one.
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def _describe(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or "pid" not in info:
        return "its process is not recorded"
    return f"pid {info['pid']} on {info.get('host', '?')}, since {info.get('since', '?')}"
