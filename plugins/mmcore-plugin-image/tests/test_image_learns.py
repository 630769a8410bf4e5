"""A small image model learns real MNIST digits (av_digits) through the plugin's own pipeline,
trained by :func:`mmcore.testing.train_probe`."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from mmcore_plugin_image.modality import ImageModality
from mmcore_plugin_image.options import ImageOptions

from mmcore.testing import shared_data, train_probe

TRAIN, VALID, EPOCHS, BATCH = 400, 200, 5, 16


@pytest.fixture(scope="module")
def mnist() -> tuple[ImageModality, dict[str, tuple[list[str], np.ndarray]]]:
    """TRAIN random train images and VALID random validation images (paths and labels)."""
    pairs = shared_data("av_digits", "pairs.csv", anchor=__file__)
    with pairs.open() as f:
        rows = list(csv.DictReader(f))
    rng = np.random.default_rng(0)
    modality = ImageModality(
        "image",
        ImageOptions(channels=1, size=28, conv_channels=(8, 16, 16), feature_size=32),
        root=pairs.parent,
    )
    data = {}
    for split, n in (("train", TRAIN), ("validation", VALID)):
        chosen = [rows[i] for i in rng.permutation(len(rows)) if rows[i]["split"] == split][:n]
        data[split] = ([r["image"] for r in chosen], np.array([int(r["label"]) for r in chosen]))
    return modality, data


def test_small_cnn_learns_mnist_digits(mnist) -> None:
    modality, data = mnist
    probe = train_probe(modality, *data["train"], epochs=EPOCHS, batch_size=BATCH, lr=3e-3)
    after = probe.accuracy(*data["validation"])
    # the first few steps against the whole last epoch: both well above single-batch noise
    first, last = np.mean(probe.step_losses[:5]), probe.losses[-1]
    assert last < 0.5 * first, f"training loss hardly dropped: {first:.3f} -> {last:.3f}"
    # chance is 0.1; 400 images and 125 steps reach about 0.8 here
    assert after > 0.6, f"validation accuracy {after:.3f} (chance 0.1)"
