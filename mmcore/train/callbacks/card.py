"""The ``card`` callback: the run's model card, ``README.md`` (see :mod:`mmcore.run.card`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmcore.plugins.hookspecs import hookimpl


class ModelCard:
    """Writes the card from ``trainer.final_metrics``, ``trainer.modality_report``, the
    splits' sizes and the encoders, after the report and before the trackers upload the
    run (``tryfirst``); a ``README.md`` that is not mmcore's is kept, with a note."""

    @hookimpl(tryfirst=True)
    def on_train_end(self, trainer: Any, metrics: Mapping[str, float]) -> None:
        from mmcore.run.card import write_run_card

        data, run = trainer.data, trainer.run
        sizes = {split: data.num_rows(split) for split in data.splits}
        members = getattr(trainer.model, "members", None)  # an ensemble: k of each encoder
        each = f" x {len(members)} members" if members is not None else ""
        encoders = {name: f"{type(enc).__name__} "
                    f"({sum(p.numel() for p in enc.parameters()):,} parameters{each})"
                    for name, enc in trainer.model.encoders.items()}
        if write_run_card(run.path, trainer.final_metrics, trainer.modality_report, sizes,
                          encoders) is None:
            trainer.note(f"{run.path / 'README.md'} is not mmcore's: no model card written")
