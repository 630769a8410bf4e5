"""How training shows progress: bars where they render, one line per epoch elsewhere.

- **A terminal**: tqdm's text bars on stderr.
- **A Jupyter notebook with ipywidgets** (``pip install 'mmcore-torch[notebook]'``): widget
  bars (``tqdm.notebook``).
- **Anything else** (stderr redirected to a file, a pipe, a SLURM job, a notebook without
  ipywidgets): no bars, and the ``log`` callback (:class:`EpochLog`) logs one line per epoch
  through the ``mmcore`` logger instead (epoch, losses, the monitored metric, seconds). Text
  bars in a notebook print a line per update with cursor-up escapes; without ipywidgets they
  are never chosen, and tqdm's ``IProgress not found`` warning never shows.

The bars are a callback, :class:`~mmcore.train.callbacks.progress.ProgressBars`, which the
trainer adds where they render (unless quiet); where they do not it adds :class:`EpochLog`
(unless quiet); naming ``"log"`` in ``train.callbacks`` logs the lines with the bars too.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from typing import Any

from mmcore.log import in_notebook
from mmcore.plugins.hookspecs import hookimpl

#: the registered name of :class:`EpochLog`
NAME = "log"


def widgets_available() -> bool:
    """Whether ipywidgets can be imported (what ``tqdm.notebook`` needs)."""
    return importlib.util.find_spec("ipywidgets") is not None


def bars_render() -> bool:
    """Whether progress bars show well here: stderr is a terminal, or a notebook with
    ipywidgets."""
    return sys.stderr.isatty() or (in_notebook() and widgets_available())


def bar_class() -> type:
    """``tqdm.notebook.tqdm`` (widgets) in a notebook with ipywidgets, else tqdm's text bar
    (never ``tqdm.auto``'s fallback, which warns and prints escapes in a notebook)."""
    if in_notebook() and widgets_available():
        from tqdm.notebook import tqdm as bar
    else:
        from tqdm.std import tqdm as bar
    return bar


def tqdm(*args: Any, **kwargs: Any) -> Any:
    """A progress bar of :func:`bar_class`."""
    return bar_class()(*args, **kwargs)


def fmt(value: Any) -> str:
    """A figure as a line shows it: a float to 4 decimals (``nan``, ``inf`` by name), anything
    else as its text."""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def epoch_line(record: Mapping[str, Any], epochs: int | None, monitor: Any = None,
               best_epoch: int | None = None) -> str:
    """``epoch 3/10: train loss 0.4100, validation loss 0.5200, digit.accuracy 0.8400
    (best), 12.8 s`` from one ``metrics.jsonl`` record. Each head's loss is shown too when
    there are several heads."""
    epoch = record.get("epoch")
    parts = []
    train = {k[len("train/"):]: v for k, v in record.items() if k.startswith("train/")}
    if "loss" in train:
        heads = {k: v for k, v in train.items() if k.endswith(".loss")}
        parts.append(f"train loss {fmt(train['loss'])}" + (
            " (" + ", ".join(f"{k} {fmt(v)}" for k, v in heads.items()) + ")"
            if len(heads) > 1 else ""))
    if "validation/loss" in record:
        parts.append(f"validation loss {fmt(record['validation/loss'])}")
    if monitor is not None and monitor.key in record and monitor.name != "loss":
        best = " (best)" if best_epoch == epoch else ""
        parts.append(f"{monitor.name} {fmt(record[monitor.key])}{best}")
    if "seconds" in record:
        parts.append(f"{record['seconds']:.1f} s")
    total = f"/{epochs}" if epochs else ""
    return f"epoch {epoch}{total}: " + ", ".join(parts)


class EpochLog:
    """Logs one line per epoch (:func:`epoch_line`) through the trainer's notes (the
    ``mmcore`` logger; ``DEBUG`` when the trainer is quiet)."""

    @hookimpl
    def on_epoch_end(self, trainer: Any, epoch: int, metrics: Mapping[str, Any]) -> None:
        trainer.note(epoch_line(metrics, getattr(trainer, "epochs", None),
                                getattr(trainer, "monitor", None),
                                getattr(trainer, "best_epoch", None)))
