"""What the run folder keeps of training as it goes, written by the main process after each
epoch's checkpoint: the best epoch's weights (``best/`` and the run's ``model.safetensors``),
the newest checkpoints (older ones pruned) and ``metrics.jsonl``, one line per epoch."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mmcore.run import checkpoint as ck
from mmcore.run.atomic import atomic_copy, atomic_write_text, copy_dir_atomic
from mmcore.run.layout import RunFolder


def publish_best(run: RunFolder, checkpoint: Path, info: Mapping[str, Any]) -> None:
    """Copy ``checkpoint``'s weights to ``best/`` (``info`` as its ``best.json``: epoch,
    monitor, value, checkpoint) and to the run's ``model.safetensors``."""
    copy_dir_atomic(checkpoint, run.best, [ck.MODEL_FILE], {ck.BEST_INFO: dict(info)})
    atomic_copy(checkpoint / ck.MODEL_FILE, run.model)


def write_history(run: RunFolder, history: Sequence[Mapping[str, Any]]) -> None:
    """``metrics.jsonl``: one JSON line per finished epoch's record, written whole."""
    text = "".join(json.dumps(record) + "\n" for record in history)
    atomic_write_text(run.metrics_jsonl, text)


def record_epoch(run: RunFolder, checkpoint: Path, history: Sequence[Mapping[str, Any]],
                 best: Mapping[str, Any] | None) -> None:
    """After an epoch's ``checkpoint`` is written: publish its weights when it is the best so
    far (``best``: its ``best.json``, else None), prune the checkpoints to the newest
    :data:`~mmcore.run.checkpoint.KEEP_LAST`, then rewrite ``metrics.jsonl``."""
    if best is not None:
        publish_best(run, checkpoint, best)
    ck.prune_checkpoints(run.checkpoints, ck.KEEP_LAST)
    write_history(run, history)
