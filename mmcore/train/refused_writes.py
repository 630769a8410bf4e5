"""A disk or folder that refuses a write ends training in one line, not a traceback: every
file of a run is written atomically, so nothing half-written is left to trust and the run
goes on with ``--resume`` once the cause is fixed."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mmcore.errors import CheckpointError

#: OS errors that mean the disk or the folder refuses a write
WRITE_ERRNOS = {
    getattr(errno, name)
    for name in ("ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "EFBIG", "EIO")
    if hasattr(errno, name)  # EDQUOT is missing on Windows
}


@contextmanager
def refused_writes_reported(run_path: Path) -> Iterator[None]:
    """Turn an :class:`OSError` of :data:`WRITE_ERRNOS` inside the block into a
    :class:`CheckpointError` naming the file (else ``run_path``), the reason and the way on;
    other errors pass unchanged."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in WRITE_ERRNOS:
            raise
        where = exc.filename or run_path
        raise CheckpointError(
            f"training stopped: {where}: {exc.strerror or exc} "
            f"[{errno.errorcode.get(exc.errno or 0, exc.errno)}]; the files already in "
            f"{run_path} are complete (continue with --resume once fixed)"
        ) from exc
