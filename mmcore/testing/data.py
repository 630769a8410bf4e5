"""``shared_data``: find the real data tests read, or skip the test when it is not there.

Real data is too large to ship with a plugin, so tests look for it in a ``shared/data`` folder
beside the checkout (``../shared/data`` from the repository root) or wherever the environment
variable ``MMCORE_SHARED_DATA`` points, and skip, saying so, on a machine without it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

ENV_VAR = "MMCORE_SHARED_DATA"


def shared_data(*parts: str, anchor: str | Path) -> Path:
    """The path ``<data>/<parts...>`` of a real-data file or folder; skips the test if absent.

    ``<data>`` is ``$MMCORE_SHARED_DATA`` when set, else the first ``<ancestor>/shared/data``
    folder found walking up from ``anchor`` (pass ``__file__``: the test module).

    Calls ``pytest.skip`` when that folder is not found or ``<data>/<parts...>`` does not
    exist, naming the path that was looked for. Call it in a fixture: pytest then reports the
    skip at each test using it (called in a test body, at this module's line).
    """
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env).expanduser().joinpath(*parts)
    else:
        start = Path(anchor).resolve()
        folders = (d / "shared" / "data" for d in (start, *start.parents))
        base = next((folder for folder in folders if folder.is_dir()), None)
        if base is None:
            _skip(f"shared/data (in no folder above {start})")
        path = base.joinpath(*parts)
    if not path.exists():
        _skip(str(path))
    return path


def _skip(what: str) -> NoReturn:
    pytest.skip(f"{what} not present (../shared/data, or set {ENV_VAR}): real-data test skipped")
