"""The ``progress`` callback: tqdm bars over the epochs and over each epoch's batches, on by
themselves where bars render (:mod:`mmcore.train.progress` says where, and what shows instead)."""

from __future__ import annotations

import sys
from collections.abc import Generator, Mapping
from typing import Any

from mmcore.plugins.hookspecs import hookimpl
from mmcore.train.epoch_state import LOG_EVERY
from mmcore.train.progress import bars_render, tqdm


def shows_bars(setting: bool, forced: bool | None, quiet: bool, is_main: bool) -> bool:
    """Whether a trainer shows the bars: ``forced`` (``Trainer(progress=)``) says so, or else
    ``train.progress`` (``setting``) where they render; never when quiet, nor on a process
    other than the main one."""
    wanted = setting if forced is None else forced
    return bool(wanted and not quiet and is_main and (forced or bars_render()))


class ProgressBars:
    """An ``epochs`` bar showing each epoch's training loss and monitored metric and, below
    it, a bar over the epoch's batches showing the running loss, cleared when the epoch's
    training pass ends. Both are closed when training fails, so that the error is printed on
    a line of its own."""

    def __init__(self) -> None:
        self.epochs: Any = None
        self.batches: Any = None

    @hookimpl
    def on_train_start(self, trainer: Any) -> None:
        self.epochs = tqdm(total=trainer.epochs, initial=trainer.epoch, desc="epochs",
                           unit="epoch", file=sys.stderr, dynamic_ncols=True)

    @hookimpl
    def on_train_epoch_start(self, trainer: Any, epoch: int) -> None:
        progress = trainer.progress
        self.batches = tqdm(total=progress.total, initial=progress.start, desc=f"epoch {epoch}",
                            unit="batch", leave=False, file=sys.stderr, dynamic_ncols=True)

    @hookimpl
    def on_train_batch_end(self, trainer: Any, batch: int) -> None:
        if self.batches is None:
            return
        if batch % LOG_EVERY == 0:  # the trainer has just added the losses up: no extra sync
            self.batches.set_postfix(loss=f"{trainer.progress.running_loss():.4f}")
        self.batches.update(1)
        if batch >= trainer.progress.total:
            self._close_batches()

    @hookimpl
    def on_validation_end(self, trainer: Any, epoch: int, metrics: Mapping[str, float],
                          improved: bool) -> None:
        self._close_batches()  # a streamed epoch can end short of its estimated batches

    @hookimpl(wrapper=True)  # after every other callback's on_epoch_end (their notes)
    def on_epoch_end(self, trainer: Any, epoch: int,
                     metrics: Mapping[str, float]) -> Generator[None, Any, Any]:
        result = yield
        self.epochs.update(1)
        shown = {"loss": f"{metrics['train/loss']:.4g}"}  # at least once an epoch
        value = metrics.get(trainer.monitor.key)
        if value is not None:
            shown[trainer.monitor.name] = f"{value:.4g}"
        self.epochs.set_postfix(shown)
        if trainer.epoch >= trainer.epochs or trainer.stopped_early:
            self._close()
        return result

    @hookimpl
    def on_train_end(self, trainer: Any, metrics: Mapping[str, float]) -> None:
        self._close()  # still open when a callback called trainer.stop()

    @hookimpl
    def on_exception(self, trainer: Any, error: BaseException) -> None:
        self._close()

    def _close_batches(self) -> None:
        if self.batches is not None:
            self.batches.close()
            self.batches = None

    def _close(self) -> None:
        self._close_batches()
        if self.epochs is not None:
            self.epochs.close()
            self.epochs = None
