"""What every experiment tracker shares: what it logs, and what happens when it fails.

A tracker is a callback that copies a run to an outside service. Losing the service must not
lose the run, and a service that cannot be reached must not cost a training run either:

- failing at ``on_train_start`` (package missing, bad address, store refused) stops the run
  before its first epoch with one line, a :class:`~mmcore.errors.PluginError` naming
  ``train.callbacks.N`` and the callback (exit code 2 from the CLI);
- failing later (the network drops mid-run) is one warning line through the ``mmcore``
  logger; the tracker then stops logging, and training goes on (the run folder has it all).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from mmcore.errors import MmcoreError, PluginError
from mmcore.log import get_logger
from mmcore.plugins.hookspecs import hookimpl
from mmcore.run.layout import (
    CARD,
    CONFUSION,
    HEALTH,
    METRICS_JSON,
    METRICS_JSONL,
    MODALITY_REPORT,
    MODEL_FILE,
    SPEC_JSON,
)

#: the run folder's files a tracker uploads at the end, when present: the small records and
#: the best weights (``model.safetensors``; with ``spec.json`` and the modalities' fitted state
#: in the run folder they are the model)
ARTIFACTS = (SPEC_JSON, METRICS_JSON, METRICS_JSONL, "metrics.csv", MODALITY_REPORT, HEALTH,
             CARD, CONFUSION, MODEL_FILE)
#: the prefix of the final figures (the best model's, on validation and test): the per-epoch
#: figures already use ``validation/...``
FINAL = "final/"


class Tracker:
    """The base of a tracker callback: subclasses implement :meth:`start`, :meth:`log_epoch`
    and :meth:`finish`, and this class turns their failures into the rules above.

    ``name`` is the callback's name in messages; ``field`` the spec field that enabled it
    (``train.callbacks.N``, set by :func:`~mmcore.train.callbacks.callback_manager`).
    """

    name = "tracker"

    def __init__(self) -> None:
        self.field = "train.callbacks"
        self.failed = False  # after a failure past the start: log nothing more

    # -- what a tracker implements --------------------------------------------------------
    def start(self, trainer: Any) -> None:
        """Open the tracker's run (named after the run folder) and log the parameters."""
        raise NotImplementedError

    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """Log one epoch's numeric figures at step ``epoch``."""
        raise NotImplementedError

    def finish(self, trainer: Any, metrics: Mapping[str, float]) -> None:
        """Log the final figures and the run folder's artifacts; close the run."""
        raise NotImplementedError

    def abandon(self) -> None:
        """Close the run after a failure, as far as that still works (never raises)."""

    # -- the trainer events ---------------------------------------------------------------
    @hookimpl
    def on_train_start(self, trainer: Any) -> None:
        try:
            self.start(trainer)
        except Exception as exc:  # noqa: BLE001 - any failure of the service stops the run here
            self.abandon()
            raise PluginError(
                f"{self.field}: callback {self.name!r} could not start: {one_line(exc)}"
            ) from None

    @hookimpl
    def on_epoch_end(self, trainer: Any, epoch: int, metrics: Mapping[str, float]) -> None:
        self._guarded("epoch", lambda: self.log_epoch(epoch, numeric(metrics)))

    @hookimpl
    def on_train_end(self, trainer: Any, metrics: Mapping[str, float]) -> None:
        self._guarded("end", lambda: self.finish(trainer, numeric(metrics)))

    def _guarded(self, when: str, call: Any) -> None:
        if self.failed:
            return
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - losing a tracker must not lose the run
            self.failed = True
            self.abandon()
            what = "at the end of training" if when == "end" else "during training"
            get_logger().warning(
                f"warning: {self.field}: callback {self.name!r} failed {what} and logs nothing "
                f"more; training goes on and the run folder keeps every figure "
                f"({one_line(exc)})"
            )


def missing_package(callback: str, exc: ImportError) -> PluginError:
    """The error of a built-in callback (``mlflow``, ``wandb``, ``tensorboard``) whose optional
    package ``exc`` failed to import: how to install it, or to drop the callback."""
    return PluginError(
        f"callback {callback!r} needs the {callback} package: pip install "
        f"'mmcore-torch[{callback}]' (or remove {callback!r} from train.callbacks). Import "
        f"failed with: {exc}"
    )


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (mmcore's own errors without their type), at
    most 300 characters."""
    text = str(exc).strip().splitlines()
    kind = type(exc).__name__
    message = (text[0] if isinstance(exc, MmcoreError) else f"{kind}: {text[0]}") if text else kind
    return message if len(message) <= 300 else message[:297] + "..."


def numeric(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of a trainer record, without ``epoch`` (the step itself)."""
    return {
        key: float(value) for key, value in metrics.items()
        if key != "epoch" and isinstance(value, int | float) and not isinstance(value, bool)
        and math.isfinite(value)
    }


def run_spec(trainer: Any) -> dict[str, Any]:
    """The resolved spec as JSON data (what ``spec.json`` holds)."""
    from mmcore.spec.load import spec_to_json

    spec = trainer.resolved_spec if trainer.resolved_spec is not None else trainer.spec
    return spec_to_json(spec)


def flatten(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """Dotted keys and text values of nested dicts (``train.lr`` -> ``"0.05"``); a list is
    one value, its JSON text."""
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from flatten(value, name + ".")
        elif isinstance(value, str):
            yield name, value
        else:
            yield name, json.dumps(value, default=str)


def artifacts(run_dir: str | Path) -> list[Path]:
    """The run folder's small files of :data:`ARTIFACTS` that exist."""
    folder = Path(run_dir)
    return [folder / name for name in ARTIFACTS if (folder / name).is_file()]
