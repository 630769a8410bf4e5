"""Tokenizer fitting, saving, loading and input checks of the text modality, on real sentences
(/work/shared/data/text_sentences) plus generated edge cases."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from mmcore_plugin_text.modality import TextModality
from mmcore_plugin_text.options import TextOptions
from mmcore_plugin_text.tokenizer import UNK

from mmcore.errors import CheckpointError, DataError
from mmcore.testing import shared_data


@pytest.fixture(scope="module")
def sentences() -> dict[str, list[tuple[str, int]]]:
    """``split -> [(text, label)]`` of the sentiment sentences."""
    path = shared_data("text_sentences", "data.csv", anchor=__file__)
    out: dict[str, list[tuple[str, int]]] = {}
    with path.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            out.setdefault(row["split"], []).append((row["text"], int(row["label"])))
    return out


def fitted(texts: list[str], **options) -> TextModality:
    modality = TextModality("text", TextOptions(**options))
    modality.fit(texts)
    return modality


@pytest.mark.parametrize("model", ["bpe", "wordlevel"])
def test_fitting_is_deterministic(sentences, model: str) -> None:
    texts = [t for t, _ in sentences["train"]]
    a, b = fitted(texts, model=model, vocab_size=1500), fitted(texts, model=model, vocab_size=1500)
    assert a.tokenizer.to_str() == b.tokenizer.to_str()
    assert a.fingerprint() == b.fingerprint()
    for text, _ in sentences["validation"][:50]:
        assert np.array_equal(a.preprocess(text), b.preprocess(text))


@pytest.mark.parametrize("model", ["bpe", "wordpiece", "wordlevel"])
def test_saved_tokenizer_reproduces_ids(sentences, tmp_path: Path, model: str) -> None:
    texts = [t for t, _ in sentences["train"]]
    original = fitted(texts, model=model, vocab_size=1500)
    assert 100 < original.vocab_size <= 1500
    original.save_state(tmp_path)
    assert (tmp_path / "tokenizer.json").is_file()
    restored = TextModality("text", TextOptions(model=model, vocab_size=1500))
    restored.load_state(tmp_path)
    assert restored.fingerprint() == original.fingerprint()
    for text, _ in sentences["test"]:
        assert np.array_equal(original.preprocess(text), restored.preprocess(text))


def test_unknown_words_map_to_unk(sentences) -> None:
    texts = [t for t, _ in sentences["train"]]
    words = fitted(texts, model="wordlevel", vocab_size=3000)
    unk = words.tokenizer.token_to_id(UNK)
    ids = words.preprocess("great zxqvbnm phone")
    assert ids.tolist()[1] == unk and ids[0] != unk and ids[2] != unk
    # subword models spell an unseen word in pieces; only unseen characters are unknown
    for model in ("bpe", "wordpiece"):
        sub = fitted(texts, model=model, vocab_size=1500)
        unk = sub.tokenizer.token_to_id(UNK)
        assert unk not in sub.preprocess("zxqvbnm").tolist()
        assert sub.preprocess("\u2603").tolist() == [unk]  # a snowman appears in no review


def test_lowercase_option(sentences) -> None:
    texts = [t for t, _ in sentences["train"]][:500]
    lower = fitted(texts, model="wordlevel")
    assert np.array_equal(lower.preprocess("GREAT Phone"), lower.preprocess("great phone"))
    cased = fitted(texts, model="wordlevel", lowercase=False)
    assert not np.array_equal(cased.preprocess("GREAT Phone"), cased.preprocess("great phone"))


def test_fingerprint_follows_the_tokenizer(sentences) -> None:
    texts = [t for t, _ in sentences["train"]]
    small = fitted(texts, vocab_size=500)
    large = fitted(texts, vocab_size=1500)
    other_texts = fitted(texts[:200], vocab_size=500)
    assert len({small.fingerprint(), large.fingerprint(), other_texts.fingerprint()}) == 3
    assert TextModality("text", TextOptions()).fingerprint().endswith("tokenizer=none")


def test_given_tokenizer_file_is_used_as_is(tmp_path: Path) -> None:
    source = fitted(["the cat sat", "a dog ran"], model="wordlevel")
    (tmp_path / "tok").mkdir()
    source.tokenizer.save(str(tmp_path / "tok" / "tokenizer.json"))
    given = TextModality(
        "text", TextOptions(tokenizer="tok/tokenizer.json", vocab_size=5000), root=tmp_path
    )
    given.fit(["completely different words here"])  # must not retrain
    assert given.tokenizer.to_str() == source.tokenizer.to_str()
    assert np.array_equal(given.preprocess("the dog sat"), source.preprocess("the dog sat"))
    assert given.fingerprint().endswith(source.fingerprint().rsplit("=", 1)[1])

    missing = TextModality("text", TextOptions(tokenizer="nope.json"), root=tmp_path)
    with pytest.raises(DataError, match="nope.json"):
        missing.fit(["x"])
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="bad.json"):
        TextModality("text", TextOptions(tokenizer="bad.json"), root=tmp_path).preprocess("x")


def test_max_length_truncates_only_when_allowed() -> None:
    texts = ["one two three four five six seven"]
    cut = fitted(texts, model="wordlevel", max_length=4)
    assert cut.preprocess(texts[0]).shape == (4,)
    strict = fitted(texts, model="wordlevel", max_length=4, truncate=False)
    assert strict.preprocess("one two three four").shape == (4,)
    with pytest.raises(ValueError, match="7 tokens, more than max_length=4"):
        strict.preprocess(texts[0])


def test_bad_and_missing_input() -> None:
    modality = fitted(["good phone", "bad phone"], model="wordlevel")
    for value in (None, "", "   \t", float("nan")):
        assert modality.is_missing(value)
    assert not modality.is_missing("ok")
    with pytest.raises(ValueError, match="expected a string, got int 42"):
        modality.preprocess(42)
    with pytest.raises(ValueError, match="expected a string, got list"):
        modality.preprocess(["good", "phone"])
    with pytest.raises(ValueError, match="no tokens"):
        modality.preprocess("\u0085")  # a control character only: nothing survives cleaning
    with pytest.raises(DataError, match="every training value must be a string, got int 7"):
        TextModality("text", TextOptions()).fit(["fine", 7])
    with pytest.raises(DataError, match="no training texts"):
        TextModality("text", TextOptions()).fit([None, "", "  "])


def test_collate_pads_token_ids() -> None:
    modality = fitted(["a b c", "d e"], model="wordlevel")
    batch = modality.collate([modality.preprocess("a b c"), None, modality.preprocess("d")])
    assert batch.values.dtype.is_floating_point is False and batch.values.shape == (3, 3)
    assert batch.mask.tolist() == [[True] * 3, [False] * 3, [True, False, False]]
    assert batch.present.tolist() == [True, False, True]
    assert batch.values[1].tolist() == [0, 0, 0] and batch.values[2, 1:].tolist() == [0, 0]


def test_unfitted_state_errors(tmp_path: Path) -> None:
    modality = TextModality("text", TextOptions())
    with pytest.raises(RuntimeError, match="no tokenizer yet"):
        modality.preprocess("hello")
    with pytest.raises(CheckpointError, match="tokenizer.json"):
        modality.load_state(tmp_path)
