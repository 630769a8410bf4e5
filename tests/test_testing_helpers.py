"""``mmcore.testing.shared_data`` and ``train_probe``, the helpers plugin tests build on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from mmcore.batch import Features, ModalityBatch
from mmcore.collate import stack_fixed
from mmcore.encoder import Encoder
from mmcore.modality import Modality, ModalityOptions
from mmcore.testing import shared_data, train_probe

SKIPPED = pytest.skip.Exception


# -- shared_data -------------------------------------------------------------------------------
@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``tmp/shared/data/set/file.csv`` beside ``tmp/repo/plugins/p/tests/test_x.py``."""
    monkeypatch.delenv("MMCORE_SHARED_DATA", raising=False)
    (tmp_path / "shared" / "data" / "set").mkdir(parents=True)
    (tmp_path / "shared" / "data" / "set" / "file.csv").write_text("a\n1\n")
    test_file = tmp_path / "repo" / "plugins" / "p" / "tests" / "test_x.py"
    test_file.parent.mkdir(parents=True)
    test_file.write_text("")
    return test_file


def test_shared_data_is_found_above_the_test_file(tree: Path, tmp_path: Path) -> None:
    found = shared_data("set", "file.csv", anchor=tree)
    assert found == tmp_path / "shared" / "data" / "set" / "file.csv"
    assert shared_data("set", anchor=str(tree)) == found.parent
    # the nearest shared/data wins, even when it lacks the file (then the test skips)
    (tmp_path / "repo" / "shared" / "data").mkdir(parents=True)
    with pytest.raises(SKIPPED, match=r"repo/shared/data/set/file\.csv not present"):
        shared_data("set", "file.csv", anchor=tree)


def test_shared_data_env_var_wins_and_missing_data_skips(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "set").mkdir(parents=True)
    (elsewhere / "set" / "other.csv").write_text("b\n")
    monkeypatch.setenv("MMCORE_SHARED_DATA", str(elsewhere))
    assert shared_data("set", "other.csv", anchor=tree) == elsewhere / "set" / "other.csv"
    # set, the variable is the only place looked at: the file beside the repo is not used
    with pytest.raises(SKIPPED) as skipped:
        shared_data("set", "file.csv", anchor=tree)
    reason = str(skipped.value)
    assert str(elsewhere / "set" / "file.csv") in reason
    assert "not present (../shared/data, or set MMCORE_SHARED_DATA): real-data test skipped" in (
        reason
    )


def test_shared_data_skips_when_no_folder_holds_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MMCORE_SHARED_DATA", raising=False)
    lone = tmp_path / "lone" / "test_y.py"
    lone.parent.mkdir()
    if any((d / "shared" / "data").is_dir() for d in lone.parents):
        pytest.skip("a shared/data folder exists above the temporary folder")
    with pytest.raises(SKIPPED, match=r"shared/data \(in no folder above .*lone"):
        shared_data("set", "file.csv", anchor=lone)


# -- train_probe -------------------------------------------------------------------------------
class PointEncoder(Encoder):
    """``[B, 2]`` points -> ``[B, 8]``; records torch's thread count at each call."""

    threads_seen: list[int] = []

    def __init__(self) -> None:
        super().__init__(8)
        self.layer = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Dropout(0.1))

    def forward(self, batch: ModalityBatch) -> Features:
        type(self).threads_seen.append(torch.get_num_threads())
        return self.features(self.layer(batch.values), None, batch)


class PointModality(Modality[ModalityOptions]):
    """A point ``[x, y]`` -> float32 ``[2]``, centred on the mean of the points it was fit on
    (``fit`` passes over anything else: ``preprocess`` reports it)."""

    def __init__(self, name: str = "point", options=None, root=None) -> None:
        super().__init__(name, options if options is not None else ModalityOptions(), root)
        self.center: np.ndarray | None = None

    def fit(self, values) -> None:
        self.center = np.mean([v for v in values if len(v) == 2], axis=0).astype(np.float32)

    def preprocess(self, value: Any) -> np.ndarray:
        arr = np.asarray(value, dtype=np.float32)
        if arr.shape != (2,):
            raise ValueError(f"expected a point [x, y], got shape {arr.shape}")
        assert self.center is not None, "train_probe must fit before it preprocesses"
        return arr - self.center

    def collate(self, items) -> ModalityBatch:
        return stack_fixed(items, shape=(2,), dtype=torch.float32)

    def build_encoder(self) -> Encoder:
        return PointEncoder()


def blobs(n: int, seed: int) -> tuple[list[list[float]], np.ndarray]:
    """Three separated Gaussian blobs (centres 4 apart, sd 1), far from the origin."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=n)
    centres = np.array([[10.0, 10.0], [14.0, 10.0], [10.0, 14.0]])
    return (centres[labels] + rng.normal(size=(n, 2))).tolist(), labels


def test_probe_learns_separable_classes_and_restores_threads() -> None:
    train, valid = blobs(240, seed=1), blobs(120, seed=2)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        PointEncoder.threads_seen.clear()
        probe = train_probe(PointModality(), *train, epochs=15, batch_size=16, lr=1e-2)
        assert torch.get_num_threads() == 2
        assert set(PointEncoder.threads_seen) == {1}
        PointEncoder.threads_seen.clear()
        accuracy = probe.accuracy(*valid)
        assert set(PointEncoder.threads_seen) == {1} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert len(probe.losses) == 15 and len(probe.step_losses) == 15 * 15
    assert probe.head.out_features == 3
    # chance is 1/3 and the start is ~ln 3 = 1.1; a linear boundary separates ~97% of points
    assert probe.losses[-1] < 0.3 * probe.losses[0], probe.losses
    assert accuracy > 0.9, f"accuracy {accuracy:.3f}"
    predicted = probe.predict(valid[0])
    assert predicted.dtype == np.int64 and predicted.shape == (120,)
    assert accuracy == pytest.approx((predicted == valid[1]).mean())


def test_probe_is_seeded_and_leaves_the_global_rng_alone() -> None:
    train = blobs(64, seed=3)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = train_probe(PointModality(), *train, epochs=2, batch_size=16, seed=5)
    assert torch.equal(torch.rand(3), expected_next)
    b = train_probe(PointModality(), *train, epochs=2, batch_size=16, seed=5)
    c = train_probe(PointModality(), *train, epochs=2, batch_size=16, seed=6)
    assert a.step_losses == b.step_losses
    assert a.step_losses != c.step_losses
    assert len(a.step_losses) == 2 * 4  # 64 values in batches of 16


def test_probe_restores_threads_when_training_fails() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        values, labels = blobs(8, seed=4)
        with pytest.raises(ValueError, match=r"training value 3 of 'point': expected a point"):
            train_probe(PointModality(), [*values[:3], [1.0], *values[4:]], labels, epochs=1)

        class Failing(PointModality):
            def collate(self, items):
                raise RuntimeError("collate broke")

        with pytest.raises(RuntimeError, match="collate broke"):
            train_probe(Failing(), values, labels, epochs=1)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(
    "labels, options, message",
    [
        ([0, 1], {}, r"expected 3 integer class labels .* shape \(2,\)"),
        ([0.0, 1.0, 1.0], {}, "integer class labels"),
        ([0, -1, 1], {}, "labels must be >= 0"),
        ([0, 1, 2], {"n_classes": 2}, "label 2 is out of range for n_classes=2"),
        ([0, 1, 2], {"epochs": 0}, "epochs and batch_size must be >= 1"),
    ],
)
def test_probe_rejects_bad_arguments(labels, options, message) -> None:
    values = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
    with pytest.raises(ValueError, match=message):
        train_probe(PointModality(), values, labels, **{"epochs": 1, **options})


def test_importing_mmcore_testing_does_not_import_torch() -> None:
    code = "import sys, mmcore.testing; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
