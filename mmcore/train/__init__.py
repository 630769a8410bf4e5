"""Training: the :class:`Trainer` and its callbacks. The strategies of several processes are
:mod:`mmcore.distributed`'s (the one-process base is :mod:`mmcore.strategy`'s); evaluation and
the reports, which a loaded run uses too, are :mod:`mmcore.evaluate`'s; the run folder it writes
is :mod:`mmcore.run`.

The :class:`Trainer` is imported on first use (``from mmcore.train import Trainer``), so a
module of this package that needs no torch (e.g. :mod:`mmcore.train.plots`, behind ``mmcore
plots``) can be imported without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mmcore.train.trainer import Trainer

__all__ = ["Trainer"]


def __getattr__(name: str) -> Any:
    if name != "Trainer":
        raise AttributeError(f"module 'mmcore.train' has no attribute {name!r}")
    value = importlib.import_module("mmcore.train.trainer").Trainer
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), "Trainer"])
