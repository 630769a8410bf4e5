"""The text modality passes mmcore's plugin contract, with a trained and with a given tokenizer."""

from __future__ import annotations

from pathlib import Path

from mmcore_plugin_text.modality import TextModality
from mmcore_plugin_text.options import TextOptions

from mmcore.testing import ModalityContract

SAMPLES = [
    "Great phone, works fine.",
    "Terrible.",
    "The battery died after two days and support never answered my emails.",
    "Not bad at all",
]
SMALL = {"embedding_size": 8, "hidden_size": 8, "size": 12, "vocab_size": 60}


class TestTextContract(ModalityContract):
    plugin = "text"
    samples = SAMPLES
    options = SMALL
    bad_samples = [42, 3.5, ["a", "list"], b"bytes", "\u0085\u0096"]


class TestTextGivenTokenizerContract(ModalityContract):
    plugin = "text"
    samples = SAMPLES
    options = {**SMALL, "tokenizer": "vocab/tokenizer.json", "model": "wordlevel"}

    def make_samples(self, tmp_path: Path) -> list[str]:
        # the tokenizer option names a file relative to the data root (tmp_path here)
        path = tmp_path / "vocab" / "tokenizer.json"
        if not path.exists():
            path.parent.mkdir()
            trainer = TextModality("text", TextOptions(model="wordlevel", vocab_size=40))
            trainer.fit([*SAMPLES, "more words to know"])
            trainer.tokenizer.save(str(path))
        return list(self.samples)
