"""A small audio model learns real spoken digits (FSDD in av_digits) through the plugin's own
pipeline: ``preprocess`` -> ``collate`` -> ``build_encoder()`` + a linear head, trained by
hand."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from mmcore_plugin_audio.modality import AudioModality
from mmcore_plugin_audio.options import AudioOptions
from torch import nn

TRAIN, VALID, EPOCHS, BATCH = 320, 200, 8, 16


def _av_digits() -> Path:
    env = os.environ.get("MMCORE_SHARED_DATA")
    # parents[4]: plugins/<dist>/tests/this.py -> the folder holding the repo and shared/
    base = Path(env) if env else Path(__file__).resolve().parents[4] / "shared" / "data"
    return base / "av_digits"


@pytest.fixture(scope="module")
def fsdd() -> tuple[AudioModality, dict[str, tuple[list[np.ndarray], np.ndarray]]]:
    """TRAIN random train clips and VALID random validation clips, preprocessed once."""
    root = _av_digits()
    if not (root / "pairs.csv").is_file():
        pytest.skip(f"{root} not present (../shared/data or MMCORE_SHARED_DATA): "
                    "real-data test skipped")
    with (root / "pairs.csv").open() as f:
        rows = list(csv.DictReader(f))
    modality = AudioModality(
        "audio",
        AudioOptions(sample_rate=8000, n_fft=256, win_length=200, hop_length=80, n_mels=32,
                     conv_channels=(8, 16, 16), feature_size=32, lstm_hidden=32, pool="last"),
        root=root,
    )
    rng = np.random.default_rng(0)
    data = {}
    for split, n in (("train", TRAIN), ("validation", VALID)):
        chosen = [rows[i] for i in rng.permutation(len(rows)) if rows[i]["split"] == split][:n]
        data[split] = ([modality.preprocess(r["audio"]) for r in chosen],
                       np.array([int(r["label"]) for r in chosen]))
    return modality, data


@pytest.fixture
def one_thread():
    # a model this small gains nothing from torch's thread pool, and on busy cores the pool's
    # waiting costs several times the work itself
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class _Classifier(nn.Module):
    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.output_size, 10)

    def forward(self, batch):
        return self.head(self.encoder(batch).values)


def _accuracy(model: nn.Module, modality: AudioModality, clips, labels) -> float:
    model.eval()
    with torch.no_grad():
        logits = model(modality.collate(clips))
    return float((logits.argmax(dim=1).numpy() == labels).mean())


def test_small_cnn_lstm_learns_spoken_digits(fsdd, one_thread) -> None:
    modality, data = fsdd
    torch.manual_seed(0)
    model = _Classifier(modality.build_encoder())
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    clips, labels = data["train"]
    before = _accuracy(model, modality, *data["validation"])
    losses = []
    order = np.random.default_rng(1)
    for _ in range(EPOCHS):
        model.train()
        perm = order.permutation(TRAIN)
        for start in range(0, TRAIN, BATCH):
            idx = perm[start : start + BATCH]
            batch = modality.collate([clips[i] for i in idx])
            loss = nn.functional.cross_entropy(model(batch), torch.from_numpy(labels[idx]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    after = _accuracy(model, modality, *data["validation"])
    # the first few steps against the whole last epoch: both well above single-batch noise
    first, last = np.mean(losses[:5]), np.mean(losses[-(TRAIN // BATCH):])
    assert last < 0.65 * first, f"training loss hardly dropped: {first:.3f} -> {last:.3f}"
    # chance is 0.1; this reaches about 0.7 here (the LSTM's last state keeps the word's order)
    assert after > 0.5, f"validation accuracy {after:.3f} (before training {before:.3f})"
