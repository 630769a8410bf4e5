"""Sentence sentiment from text alone: 3,000 real review sentences (Amazon, IMDb, Yelp).

    mmcore train examples/text_sentiment/spec.py
    mmcore train examples/text_sentiment/spec.py modalities.text.options.model=wordlevel

The data (``data/sentences.csv``, CC BY 4.0, see ``data/README.md``) is bundled, so nothing
outside the repository is read.
"""

import mmcore

spec = mmcore.Spec(
    name="text_sentiment",
    data={"path": "data/sentences.csv", "split_column": "split"},
    modalities={
        "text": {
            "plugin": "text",
            "column": "text",
            "options": {
                "vocab_size": 4000, "max_length": 64, "embedding_size": 64,
                "hidden_size": 64, "bidirectional": True, "dropout": 0.3, "size": 64,
            },
        }
    },
    fusion={"name": "concat", "options": {"size": 64, "hidden": 64, "dropout": 0.3}},
    heads={"sentiment": {"kind": "classification", "target": "label"}},
    train={"epochs": 10, "batch_size": 32, "lr": 3e-3, "scheduler": "cosine", "seed": 0},
)
