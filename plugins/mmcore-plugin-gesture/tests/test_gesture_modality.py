"""``gesture`` on real fingertip trajectories (point_history.csv) and generated edge cases."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mmcore_plugin_gesture.modality import GestureModality
from mmcore_plugin_gesture.options import GestureOptions

from mmcore.testing import shared_data, train_probe

SMALL = {"hidden_size": 24, "output_size": 24}


@pytest.fixture(scope="module")
def trajectories() -> tuple[list[list[float]], np.ndarray]:
    """600 random rows of point_history.csv: multi-column values (32 floats x0,y0..x15,y15,
    as the data layer passes a ``column`` list) and their labels."""
    path = shared_data("hand_gestures", "point_history.csv", anchor=__file__)
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    pick = np.random.default_rng(0).permutation(len(rows))[:600]
    values = [[float(v) for v in rows[i][1:]] for i in pick]
    return values, np.array([int(rows[i][0]) for i in pick])


def make(root: Path | None = None, **options) -> GestureModality:
    return GestureModality("motion", GestureOptions(**options), root=root)


# -- reading ---------------------------------------------------------------------------------
def test_flat_row_is_split_into_steps_and_channels(trajectories):
    value = trajectories[0][0]
    expected = np.asarray(value, dtype=np.float32).reshape(16, 2)
    for options in ({"channels": 2}, {"steps": 16}, {"steps": 16, "channels": 2}):
        arr = make(normalize="none", **options).preprocess(value)
        assert arr.dtype == np.float32
        np.testing.assert_array_equal(arr, expected)
    assert make(normalize="none").preprocess(value).shape == (32, 1)  # one channel by default


def test_every_source_gives_the_same_array(trajectories, tmp_path):
    seq = np.asarray(trajectories[0][1], dtype=np.float32).reshape(16, 2)
    np.save(tmp_path / "t.npy", seq)
    np.savetxt(tmp_path / "t.csv", seq, delimiter=",", header="x,y", comments="")
    (tmp_path / "t.json").write_text(json.dumps(seq.tolist()))
    modality = make(tmp_path, channels=2)
    modality.fit([trajectories[0][1], trajectories[0][2]])
    sources = [trajectories[0][1], seq.tolist(), seq, json.dumps(seq.tolist()), "t.npy", "t.csv",
               str(tmp_path / "t.json")]
    arrays = [modality.preprocess(s) for s in sources]
    for arr in arrays:
        assert arr.shape == (16, 2)
        np.testing.assert_allclose(arr, arrays[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(arrays[0], modality.preprocess(sources[0]))  # deterministic


# -- fitted normalisation --------------------------------------------------------------------
def test_standardisation_is_fitted_on_training_values(trajectories, tmp_path):
    train = trajectories[0][:400]
    modality = make(channels=2)
    with pytest.raises(RuntimeError, match="not fitted: call fit"):
        modality.preprocess(train[0])
    modality.fit(train)
    raw = np.concatenate([np.asarray(v, np.float32).reshape(16, 2) for v in train]).astype(float)
    stats = modality.pipeline.stats[-1]
    np.testing.assert_allclose(stats.centre, raw.mean(axis=0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(stats.scale, raw.std(axis=0), rtol=1e-9)
    normalised = np.concatenate([modality.preprocess(v) for v in train])
    np.testing.assert_allclose(normalised.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(normalised.std(axis=0), 1.0, atol=1e-5)

    modality.save_state(tmp_path)
    state = json.loads((tmp_path / "gesture.json").read_text())
    fitted = state["pipeline"]["stats"][-1]
    assert state["channels"] == 2 and len(fitted["centre"]) == len(fitted["scale"]) == 2
    loaded = make(channels=2)
    loaded.load_state(tmp_path)
    assert loaded.fingerprint() == modality.fingerprint()
    np.testing.assert_array_equal(loaded.preprocess(train[5]), modality.preprocess(train[5]))
    assert make(channels=2).fingerprint() != modality.fingerprint()  # cache key sees the stats


def test_constant_channel_and_variable_lengths_fit():
    seqs = [np.stack([np.arange(n, dtype=np.float32), np.full(n, 3.0, np.float32)], axis=1)
            for n in (2, 5, 9)]
    modality = make()
    modality.fit(seqs)
    assert modality.channels == 2  # taken from the data when the options do not say
    # a constant channel is centred, not divided by zero
    assert modality.pipeline.stats[-1].scale[1] == 1.0
    out = modality.preprocess(seqs[1])
    assert np.isfinite(out).all() and not out[:, 1].any()


def test_bad_state_files_are_reported(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        make().load_state(tmp_path)
    (tmp_path / "gesture.json").write_text('{"channels": 2, "mean": [0, 0], "std": [1]}')
    with pytest.raises(ValueError, match="no 'pipeline' entry"):
        make().load_state(tmp_path)
    good = make(channels=2)
    good.fit([np.zeros((3, 2)), np.ones((4, 2))])
    good.save_state(tmp_path)
    state = json.loads((tmp_path / "gesture.json").read_text())
    state["pipeline"]["stats"][-1]["scale"] = [1.0, -1.0]
    (tmp_path / "gesture.json").write_text(json.dumps(state))
    with pytest.raises(ValueError, match="scale > 0"):
        make(channels=2).load_state(tmp_path)
    (tmp_path / "gesture.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot read the saved state"):
        make().load_state(tmp_path)


# -- collation and encoder -------------------------------------------------------------------
def test_collate_pads_variable_lengths_with_masks(trajectories):
    modality = make(channels=2, normalize="none")
    full = np.asarray(trajectories[0][0], dtype=np.float32).reshape(16, 2)
    items = [modality.preprocess(full[:9]), None, modality.preprocess(full),
             modality.preprocess(full[:4].reshape(-1).tolist())]
    batch = modality.collate(items)
    assert tuple(batch.values.shape) == (4, 16, 2)
    assert batch.mask.sum(dim=1).tolist() == [9, 0, 16, 4]
    assert batch.present.tolist() == [True, False, True, True]
    assert bool((batch.values[~batch.mask] == 0).all())
    with pytest.raises(ValueError, match=r"sample 1 has steps of shape \(3,\), expected \(2,\)"):
        modality.collate([items[0], np.zeros((4, 3), np.float32)])


@pytest.mark.parametrize("pool, bidirectional", [("last", False), ("last", True), ("mean", True)])
def test_encoder_outputs_do_not_depend_on_padding(trajectories, pool, bidirectional):
    options = {"channels": 2, "normalize": "none", "encoder": "tcn", "pool": pool,
               "bidirectional": bidirectional}
    modality = make(**options, **SMALL)
    full = modality.preprocess(trajectories[0][3])
    short = full[:5]
    torch.manual_seed(0)
    encoder = modality.build_encoder().eval()
    torch.manual_seed(0)
    seq_encoder = make(output="sequence", **options, **SMALL).build_encoder().eval()
    with torch.no_grad():
        alone = encoder(modality.collate([short])).values
        padded = encoder(modality.collate([short, full]))
        seq = seq_encoder(modality.collate([short, full]))
    assert tuple(padded.values.shape) == (2, 24) and padded.mask is None
    torch.testing.assert_close(padded.values[:1], alone, atol=1e-5, rtol=1e-5)
    assert tuple(seq.values.shape) == (2, 16, 24) and seq.mask.sum(dim=1).tolist() == [5, 16]
    assert not seq.values[0, 5:].any()  # padded steps are zero, not the linear layer's bias
    if pool == "mean":
        torch.testing.assert_close(seq.pooled(), padded.values, atol=1e-5, rtol=1e-5)


# -- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value, options, message",
    [
        ([0.1] * 31 + [float("nan")], {"channels": 2}, "non-finite value nan"),
        ([0.1] * 31, {"channels": 2}, "multiple of channels=2"),
        ([0.1] * 30, {"steps": 16, "channels": 2}, "steps=16 x channels=2 = 32"),
        (np.zeros((16, 3)), {"channels": 2}, "got 3 channels per step, expected 2"),
        (np.zeros((12, 2)), {"steps": 16}, "got 12 time steps, expected steps=16"),
        (np.zeros((2, 16, 2)), {}, r"expected a sequence \[T, C\]"),
        ([], {}, "empty"),
        (np.zeros((0, 2)), {}, "empty"),
        ("gone.json", {}, "file not found"),
        (np.zeros((20, 2)), {"max_length": 16}, "more than max_length=16; set truncate=True"),
    ],
)
def test_bad_input_says_what_was_expected(tmp_path, value, options, message):
    with pytest.raises(ValueError, match=message):
        make(tmp_path, normalize="none", **options).preprocess(value)


def test_fitted_channels_are_enforced_with_a_hint():
    modality = make(normalize="none")
    modality.fit([np.zeros((4, 2))])
    with pytest.raises(ValueError, match="expected 2 .from the training data.; set channels"):
        modality.preprocess([0.0] * 8)  # flat values are one channel unless told otherwise
    with pytest.raises(ValueError, match="training value 1 of 'motion': got 3 channels"):
        make().fit([np.zeros((4, 2)), np.zeros((4, 3))])


def test_truncate_keeps_the_first_steps():
    seq = np.arange(20 * 2, dtype=np.float32).reshape(20, 2)
    out = make(normalize="none", max_length=16, truncate=True).preprocess(seq)
    np.testing.assert_array_equal(out, seq[:16])


# -- learning --------------------------------------------------------------------------------
def test_lstm_learns_rotation_direction(trajectories):
    """Clockwise vs counter-clockwise is not linearly separable from raw coordinates (a
    linear model gets ~0.31 here); the LSTM over the 16 steps must learn the order."""
    values, labels = trajectories
    probe = train_probe(make(channels=2, **SMALL), values[:480], labels[:480], epochs=10,
                        lr=1e-2, n_classes=4)
    predicted, truth = probe.predict(values[480:]), labels[480:]
    accuracy = (predicted == truth).mean()
    assert min(probe.losses[-3:]) < 0.4 * probe.losses[0], probe.losses  # lr 1e-2 wobbles
    assert accuracy > 0.7, f"held-out accuracy {accuracy:.2f} (4 classes, linear model ~0.31)"
    rotations = (truth == 1) | (truth == 2)
    turned = (predicted[rotations] == truth[rotations]).mean()
    assert turned > 0.6, f"clockwise/counter-clockwise accuracy {turned:.2f}"
