"""The shared modality contract (mmcore.testing) for ``position``, on generated sequences."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mmcore.testing import ModalityContract

K, D = 5, 2


def _frames(length: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, size=(length, K, D)).astype(np.float32)


class TestPositionContract(ModalityContract):
    plugin = "position"
    options = {
        "num_keypoints": K, "dims": D, "relative_to": 0, "scale": "max_abs",
        "conv_channels": [6, 6], "hidden_size": 8,
    }
    bad_samples = (
        [float("nan")] * (K * D),  # a multi-column frame with an empty cell
        [0.5] * (K * D - 1),  # one coordinate short
        [],
        "missing.npy",
        "[[0.1, 0.2], [0.3",  # a broken JSON cell
        [[[[0.0] * D] * K]],  # 4-D
    )

    def make_samples(self, tmp_path: Path) -> list:
        np.save(tmp_path / "walk.npy", _frames(4, 3))
        return [
            _frames(1, 0).reshape(-1).tolist(),  # one frame as a multi-column value
            _frames(3, 1).tolist(),  # nested lists [T, K, D]
            json.dumps(_frames(2, 2).reshape(2, -1).tolist()),  # JSON flat frames [T, K*D]
            "walk.npy",
        ]
