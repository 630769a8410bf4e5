"""A small image model learns real MNIST digits (av_digits) through the plugin's own pipeline:
``preprocess`` -> ``collate`` -> ``build_encoder()`` + a linear head, trained by hand."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from mmcore_plugin_image.modality import ImageModality
from mmcore_plugin_image.options import ImageOptions
from torch import nn

TRAIN, VALID, EPOCHS, BATCH = 400, 200, 5, 16


def _av_digits() -> Path:
    env = os.environ.get("MMCORE_SHARED_DATA")
    # parents[4]: plugins/<dist>/tests/this.py -> the folder holding the repo and shared/
    base = Path(env) if env else Path(__file__).resolve().parents[4] / "shared" / "data"
    return base / "av_digits"


@pytest.fixture(scope="module")
def mnist() -> tuple[ImageModality, dict[str, tuple[list[np.ndarray], np.ndarray]]]:
    """The first TRAIN train rows and VALID validation rows, decoded once."""
    root = _av_digits()
    if not (root / "pairs.csv").is_file():
        pytest.skip(f"{root} not present (../shared/data or MMCORE_SHARED_DATA): "
                    "real-data test skipped")
    with (root / "pairs.csv").open() as f:
        rows = list(csv.DictReader(f))
    rng = np.random.default_rng(0)
    modality = ImageModality(
        "image",
        ImageOptions(channels=1, size=28, conv_channels=(8, 16, 16), feature_size=32),
        root=root,
    )
    data = {}
    for split, n in (("train", TRAIN), ("validation", VALID)):
        chosen = [rows[i] for i in rng.permutation(len(rows)) if rows[i]["split"] == split][:n]
        data[split] = ([modality.preprocess(r["image"]) for r in chosen],
                       np.array([int(r["label"]) for r in chosen]))
    return modality, data


@pytest.fixture
def one_thread():
    # a model this small gains nothing from torch's thread pool, and on busy cores the pool's
    # waiting costs ten times the work (measured here: 30 vs 370 ms a step)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _accuracy(model: nn.Module, modality: ImageModality, images, labels) -> float:
    model.eval()
    with torch.no_grad():
        logits = model(modality.collate(images))
    return float((logits.argmax(dim=1).numpy() == labels).mean())


def test_small_cnn_learns_mnist_digits(mnist, one_thread) -> None:
    modality, data = mnist
    torch.manual_seed(0)
    encoder = modality.build_encoder()
    head = nn.Linear(encoder.output_size, 10)

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder, self.head = encoder, head

        def forward(self, batch):
            return self.head(self.encoder(batch).values)

    model = Model()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    images, labels = data["train"]
    before = _accuracy(model, modality, *data["validation"])
    losses = []
    order = np.random.default_rng(1)
    for _ in range(EPOCHS):
        model.train()
        perm = order.permutation(TRAIN)
        for start in range(0, TRAIN, BATCH):
            idx = perm[start : start + BATCH]
            batch = modality.collate([images[i] for i in idx])
            loss = nn.functional.cross_entropy(model(batch), torch.from_numpy(labels[idx]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    after = _accuracy(model, modality, *data["validation"])
    # the first few steps against the whole last epoch: both well above single-batch noise
    first, last = np.mean(losses[:5]), np.mean(losses[-(TRAIN // BATCH):])
    assert last < 0.5 * first, f"training loss hardly dropped: {first:.3f} -> {last:.3f}"
    # chance is 0.1; 400 images and 125 steps reach about 0.8 here
    assert after > 0.6, f"validation accuracy {after:.3f} (before training {before:.3f})"
