"""The shared modality contract (mmcore.testing) for ``gesture``, on generated sequences."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mmcore.testing import ModalityContract

C = 3


def _stream(length: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(2.0, 5.0, size=(length, C)).astype(np.float32)


class TestGestureContract(ModalityContract):
    plugin = "gesture"
    options = {"channels": C, "hidden_size": 8, "output_size": 6, "bidirectional": True}
    bad_samples = (
        [float("nan")] * (2 * C),
        [[0.1, 0.2]],  # two channels instead of three
        [0.5] * (2 * C + 1),  # a flat value that is not whole steps
        [],
        "missing.csv",
        np.zeros((2, 2, C)),
    )

    def make_samples(self, tmp_path: Path) -> list:
        np.savetxt(tmp_path / "imu.csv", _stream(6, 3), delimiter=",", header="ax,ay,az",
                   comments="")
        return [
            _stream(4, 0).reshape(-1).tolist(),  # flat: a multi-column value of 4 steps
            _stream(7, 1).tolist(),  # nested lists [T, C]
            json.dumps(_stream(2, 2).tolist()),
            "imu.csv",
        ]
