"""A small text model learns sentence sentiment from the real data, trained by
:func:`mmcore.testing.train_probe`."""

from __future__ import annotations

import csv

import pytest
from mmcore_plugin_text.modality import TextModality
from mmcore_plugin_text.options import TextOptions

from mmcore.testing import shared_data, train_probe


@pytest.fixture(scope="module")
def sentences() -> dict[str, tuple[list[str], list[int]]]:
    """``split -> (texts, labels)`` of the sentiment sentences."""
    path = shared_data("text_sentences", "data.csv", anchor=__file__)
    out: dict[str, tuple[list[str], list[int]]] = {}
    with path.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            texts, labels = out.setdefault(row["split"], ([], []))
            texts.append(row["text"])
            labels.append(int(row["label"]))
    return out


def test_small_model_learns_sentiment(sentences) -> None:
    options = TextOptions(
        vocab_size=2000, embedding_size=32, hidden_size=32, size=32, bidirectional=False,
        max_length=48,
    )
    probe = train_probe(TextModality("text", options), *sentences["train"], epochs=4,
                        batch_size=64, lr=5e-3)
    after = probe.accuracy(*sentences["validation"])
    assert probe.losses[-1] < 0.75 * probe.losses[0], probe.losses
    # 300 balanced validation sentences: chance is 0.5 (sd 0.03); bag-of-words NB reaches 0.83
    assert after >= 0.68, f"validation accuracy {after:.3f} (chance 0.5)"
