"""Every hook a plugin can implement. Mark implementations with ``mmcore.hookimpl``.

Registration hooks receive a ``register`` callable::

    register(name, impl, options=None, description="")

``impl`` is the implementing class or, better, its import path ``"package.module:Class"``,
imported only when the name is used; ``options`` is the pydantic options model (or its path),
kept in a module that imports no torch so that ``mmcore validate`` stays fast. It is the one
declaration of the component's options (the class does not name it again; ``None``: the
component takes no options); mmcore validates a spec's options with it and hands the
implementation the result (see :mod:`mmcore.spec.options`).
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT = "mmcore"
#: The plugin API version. A plugin module may declare ``MMCORE_API_VERSION``; a different
#: major version is refused with a message.
API_VERSION = 1

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: the trainer events a callback implements (the ``on_*`` hooks below); plugins'
#: implementations of the other hooks are not called by a trainer
EVENT_HOOKS = ("on_train_start", "on_train_epoch_start", "on_train_batch_end",
               "on_validation_end", "on_epoch_end", "on_checkpoint_saved", "on_train_end",
               "on_exception")


@hookspec
def register_modalities(register: Any) -> None:
    """Register modalities: ``register(name, "pkg.module:ModalityClass", options=Options)``."""


@hookspec
def register_fusions(register: Any) -> None:
    """Register fusion strategies: ``register(name, "pkg.module:FusionClass", options=...)``."""


@hookspec
def register_heads(register: Any) -> None:
    """Register head kinds: ``register(name, "pkg.module:HeadClass", options=...)``."""


@hookspec
def register_callbacks(register: Any) -> None:
    """Register trainer callbacks (loggers): ``register(name, "pkg.module:CallbackClass")``."""


@hookspec
def on_train_start(trainer: Any) -> None:
    """Training is about to start (after a resume, if any)."""


@hookspec
def on_train_epoch_start(trainer: Any, epoch: int) -> None:
    """Epoch ``epoch`` (from 1) starts its training pass; ``trainer.progress`` holds its
    ``total`` batches and the one it ``start``-s from (> 0 resuming inside it)."""


@hookspec
def on_train_batch_end(trainer: Any, batch: int) -> None:
    """The epoch's ``batch``-th batch (from 1) was trained, and its step checkpoint, if any,
    written. Called every batch, so keep it cheap: reading a loss waits for the device, and
    ``trainer.progress.running_loss()`` is current only when ``batch`` is a multiple of
    :data:`~mmcore.train.epoch_state.LOG_EVERY`."""


@hookspec
def on_validation_end(trainer: Any, epoch: int, metrics: dict[str, float], improved: bool) -> None:
    """An epoch was trained and validated and the best epoch updated (``improved``: this one
    is the best so far), before its checkpoint: what a callback sets now is saved with it."""


@hookspec
def on_epoch_end(trainer: Any, epoch: int, metrics: dict[str, float]) -> None:
    """An epoch and its validation finished; ``metrics`` holds this epoch's figures."""


@hookspec
def on_checkpoint_saved(trainer: Any, path: Any) -> None:
    """A complete checkpoint was written to ``path``."""


@hookspec
def on_train_end(trainer: Any, metrics: dict[str, float]) -> None:
    """Training ended; ``metrics`` are the final figures."""


@hookspec
def on_exception(trainer: Any, error: BaseException) -> None:
    """``fit()`` is failing with ``error`` (a ``KeyboardInterrupt`` too), raised once the
    callbacks were set up (from reading the data to the last ``on_train_end``); called
    before it propagates, e.g. to close what a callback opened."""
