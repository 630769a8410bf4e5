"""Training, loading and hashing Hugging Face ``tokenizers`` tokenizers for the text modality."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

from mmcore_plugin_text.options import TextOptions

PAD = "[PAD]"
UNK = "[UNK]"
#: the trained vocabulary starts with these, so ``[PAD]`` is id 0 and ``[UNK]`` id 1
SPECIAL_TOKENS = [PAD, UNK]


def train_tokenizer(texts: Sequence[str], options: TextOptions) -> Tokenizer:
    """A new tokenizer of kind ``options.model`` trained on ``texts`` (deterministic).

    Text is cleaned (control characters removed, whitespace unified) and, with
    ``options.lowercase``, lower-cased and stripped of accents; words and punctuation are then
    split apart before the subword model runs. Characters never seen in training become ``[UNK]``
    (and, for ``wordlevel``, whole words never seen).

    ``bpe`` and ``wordlevel`` give the same tokenizer for the same texts. ``wordpiece`` training
    in ``tokenizers`` can differ between runs (huggingface/tokenizers#1794: its ``##`` tokens get
    ids in hash-map order, which breaks ties between merges), so reuse the saved tokenizer.
    """
    common = {
        "vocab_size": options.vocab_size,
        "min_frequency": options.min_frequency,
        "special_tokens": SPECIAL_TOKENS,
        "show_progress": False,
    }
    if options.model == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token=UNK))
        trainer = trainers.WordPieceTrainer(**common)
    elif options.model == "bpe":
        tokenizer = Tokenizer(models.BPE(unk_token=UNK))
        trainer = trainers.BpeTrainer(**common)
    else:
        tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
        trainer = trainers.WordLevelTrainer(**common)
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, lowercase=options.lowercase
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(list(texts), trainer=trainer, length=len(texts))
    return tokenizer


def load_tokenizer(path: Path) -> Tokenizer:
    """A tokenizer from a ``tokenizer.json`` file, with its own padding and truncation turned
    off (the modality's ``max_length``/``truncate`` options decide those)."""
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception for unreadable JSON
        raise ValueError(f"cannot read tokenizer {path}: {exc}") from None
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def tokenizer_hash(tokenizer: Tokenizer) -> str:
    """A short hash of the tokenizer's full JSON (vocabulary, normalizer, model)."""
    return hashlib.sha256(tokenizer.to_str().encode("utf-8")).hexdigest()[:16]
