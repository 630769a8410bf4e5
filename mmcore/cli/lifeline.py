"""Ranks started by ``--nproc`` die with their launcher, even when it is SIGKILLed.

torchrun's launcher starts each rank in a session of its own, and nothing stops a rank whose
launcher was killed outright: it would train to the end. :func:`launched_by` puts the
launcher's pid in the environment it starts the ranks with; each rank calls :func:`arm` first
thing and asks Linux for SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``). Elsewhere
:func:`arm` does nothing. No torch import: every command calls :func:`arm`.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

#: the pid of the ``--nproc`` launcher whose ranks this process and its siblings are
LAUNCHER_PID_ENV = "MMCORE_LAUNCHER_PID"
_PR_SET_PDEATHSIG = 1


def launched_by(pid: int) -> None:
    """Mark the processes started from now on (they inherit the environment) as ranks of the
    launcher ``pid``."""
    os.environ[LAUNCHER_PID_ENV] = str(pid)


def arm() -> None:
    """In a rank of an ``--nproc`` launcher: be killed when the launcher dies, or exit now if
    it is already gone. The variable is removed, so processes this one starts are not taken
    for ranks."""
    value = os.environ.pop(LAUNCHER_PID_ENV, None)
    if not value or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            return
    except (OSError, AttributeError, ValueError):
        return
    if str(os.getppid()) != value:  # the launcher died before the request was made
        os._exit(128 + int(signal.SIGKILL))
