"""The ``wandb`` callback: a run's config, per-epoch figures and files in Weights & Biases.

Configured by W&B's own environment variables: ``WANDB_PROJECT``, ``WANDB_ENTITY``,
``WANDB_MODE`` (``offline`` writes the run to disk only, for ``wandb sync`` later;
``disabled`` turns it off), ``WANDB_API_KEY`` (or ``wandb login``), ``WANDB_DIR`` (default
here: the run folder, so W&B's files sit in ``<run>/wandb``), ``WANDB_TAGS``, ``WANDB_NOTES``.
Needs ``pip install 'mmcore-torch[wandb]'``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmcore.train.trackers.base import FINAL, Tracker, artifacts, missing_package, run_spec


class WandbTracker(Tracker):
    """Logs to W&B: the resolved spec as the run's config, each epoch's figures at step
    ``epoch``, the best model's final figures in the summary as ``final/validation/...`` and
    ``final/test/...``, and the run folder's small files (spec, metrics, model card) saved
    with the run. The W&B run is named after the run folder."""

    name = "wandb"

    def __init__(self) -> None:
        super().__init__()
        try:
            import wandb
        except ImportError as exc:
            raise missing_package("wandb", exc) from None
        self._wandb: Any = wandb
        self.run: Any = None

    def start(self, trainer: Any) -> None:
        run_dir = Path(trainer.run_dir)
        self.run = self._wandb.init(
            name=run_dir.name, config=run_spec(trainer),
            dir=None if os.environ.get("WANDB_DIR") else str(run_dir),
            reinit="create_new",  # beside any run of the caller's, never replacing it
        )

    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        self.run.log(dict(metrics), step=epoch)

    def finish(self, trainer: Any, metrics: Mapping[str, float]) -> None:
        self.run.summary.update({FINAL + k: v for k, v in metrics.items()})
        run_dir = Path(trainer.run_dir)
        for path in artifacts(run_dir):
            self.run.save(str(path), base_path=str(run_dir), policy="now")
        self.run.finish()

    def abandon(self) -> None:
        if self.run is None:
            return
        try:
            self.run.finish(exit_code=1)
        except Exception:  # noqa: BLE001, S110 - the service is the thing that failed
            pass
