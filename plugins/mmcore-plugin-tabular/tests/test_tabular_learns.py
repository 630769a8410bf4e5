"""On real data: the 42 keypoint coordinates of ../shared/data/hand_gestures as 42 numeric
columns of one tabular modality, trained end to end by mmcore (both encoders)."""

from __future__ import annotations

import pytest
import torch

import mmcore
from mmcore.testing import shared_data

COLUMNS = [f"{axis}{i}" for i in range(21) for axis in ("x", "y")]


@pytest.fixture(scope="module")
def keypoints():
    return shared_data("hand_gestures", "keypoints_labeled.csv", anchor=__file__)


@pytest.mark.parametrize("encoder,floor", [("mlp", 0.95), ("ft_transformer", 0.9)])
def test_hand_signs_from_42_numeric_columns(keypoints, tmp_path, encoder, floor):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    options = {"encoder": encoder, "hidden": [64], "size": 32, "d_token": 16, "heads": 2,
               "layers": 1}
    spec = {
        "name": f"tabular-{encoder}",
        "data": {"path": str(keypoints), "cache_dir": str(tmp_path / "cache"),
                 "split": {"validation": 0.1, "test": 0.2, "seed": 0}},
        "modalities": {"hand": {"plugin": "tabular", "column": COLUMNS, "options": options}},
        "heads": {"sign": {"target": "label_name"}},
        "train": {"epochs": 4 if encoder == "mlp" else 8, "batch_size": 64, "lr": 3e-3,
                  "seed": 0, "progress": False, "callbacks": []},
    }
    try:
        final = mmcore.Trainer(spec, output=tmp_path / "run", quiet=True, plots=False,
                               report=False).fit()
    finally:
        torch.set_num_threads(before)
    assert final["test"]["sign.accuracy"] >= floor, final["test"]
