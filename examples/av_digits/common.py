"""Shared pieces of the av_digits specs: the data, the two modalities, the head, training.

Set ``AV_DIGITS_CLEAN=1`` to train on the clean data instead of the degraded copy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from degrade import ensure_degraded

HERE = Path(__file__).resolve().parent
CLEAN = os.environ.get("AV_DIGITS_CLEAN") == "1"
TABLE = HERE / "data" / "pairs.csv" if CLEAN else HERE / "data" / "degraded" / "pairs.csv"
IMAGE = {
    "plugin": "image",
    "column": "image",
    "options": {"size": 28, "channels": 1, "conv_channels": [32, 64, 64], "feature_size": 64},
}
AUDIO = {
    "plugin": "audio",
    "column": "audio",
    "options": {
        "sample_rate": 8000, "n_fft": 256, "win_length": 200, "hop_length": 80, "n_mels": 40,
        "max_seconds": 1.0, "truncate": True, "feature_size": 64,
    },  # encoder "auto": minirocket for these 500 training clips (docs/plugins/audio.md)
}
#: a linear head (label smoothing 0.1 by default): what generalises from 500 rows here
HEADS = {"digit": {"kind": "classification", "target": "label", "options": {"hidden": []}}}
TRAIN = {"epochs": 12, "batch_size": 32, "lr": 2e-3, "scheduler": "cosine", "seed": 0}


def make(name: str, modalities: dict[str, Any], fusion: dict[str, Any] | None = None) -> dict:
    """A spec dict for one setting (the degraded files it reads are built first if needed)."""
    if not CLEAN:
        ensure_degraded(tuple(m for m in ("image", "audio") if m in modalities))
    return {
        "name": name,
        "data": {"path": str(TABLE), "split_column": "split",
                 "license": "audio: FSDD, CC BY-SA 4.0; images: MNIST, CC BY-SA 3.0"},
        "modalities": modalities,
        "fusion": fusion or {"name": "concat", "options": {"size": 64, "hidden": 64}},
        "heads": HEADS,
        "train": TRAIN,
    }
