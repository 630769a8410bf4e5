"""``position`` on real hand landmarks (keypoint.csv) and on generated edge cases."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mmcore_plugin_position.modality import PositionModality
from mmcore_plugin_position.options import PositionOptions
from pydantic import ValidationError

from mmcore.errors import SpecError
from mmcore.spec import validate_spec
from mmcore.testing import shared_data, train_probe

KEYPOINTS = [f"{axis}{i}" for i in range(21) for axis in ("x", "y")]
SMALL = {"conv_channels": (16, 16), "hidden_size": 16}


@pytest.fixture(scope="module")
def hands() -> tuple[list[list[float]], np.ndarray]:
    """600 random rows of keypoint.csv: multi-column values (42 floats, as the data layer
    passes a ``column`` list) and their labels."""
    path = shared_data("hand_gestures", "keypoint.csv", anchor=__file__)
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    pick = np.random.default_rng(0).permutation(len(rows))[:600]
    values = [[float(v) for v in rows[i][1:]] for i in pick]
    return values, np.array([int(rows[i][0]) for i in pick])


def make(root: Path | None = None, **options) -> PositionModality:
    """A modality that reads values as they are (``normalize="none"`` unless given), so that
    its output can be compared with the input without fitting."""
    options.setdefault("normalize", "none")
    return PositionModality("hand", PositionOptions(**options), root=root)


# -- reading ---------------------------------------------------------------------------------
def test_multicolumn_value_is_one_frame_of_keypoints(hands):
    value = hands[0][0]
    arr = make(num_keypoints=21, dims=2).preprocess(value)
    assert arr.shape == (1, 21, 2) and arr.dtype == np.float32
    np.testing.assert_array_equal(arr[0], np.asarray(value, dtype=np.float32).reshape(21, 2))
    assert make(dims=2).preprocess(value).shape == (1, 21, 2)  # K inferred from 42 values
    flat = make().preprocess(value)
    assert flat.shape == (1, 42)


def test_every_source_gives_the_same_array(hands, tmp_path):
    frames = np.asarray(hands[0][:3], dtype=np.float32)  # 3 frames [T=3, 42]
    np.save(tmp_path / "seq.npy", frames.reshape(3, 21, 2))
    np.savetxt(tmp_path / "seq.csv", frames, delimiter=",", header=",".join(KEYPOINTS), comments="")
    (tmp_path / "seq.json").write_text(json.dumps(frames.tolist()))
    modality = make(tmp_path, num_keypoints=21, dims=2)
    sources = [frames.tolist(), frames, json.dumps(frames.tolist()), "seq.npy", "seq.csv",
               str(tmp_path / "seq.json"), frames.reshape(3, 21, 2).tolist()]
    arrays = [modality.preprocess(s) for s in sources]
    for arr in arrays:
        assert arr.shape == (3, 21, 2)
        np.testing.assert_allclose(arr, arrays[0], rtol=1e-6)
    np.testing.assert_array_equal(arrays[0], modality.preprocess(sources[0]))  # deterministic


def test_single_frame_given_as_keypoint_rows(hands):
    frame = np.asarray(hands[0][1], dtype=np.float32).reshape(21, 2)
    arr = make(num_keypoints=21, dims=2).preprocess(frame.tolist())
    np.testing.assert_array_equal(arr, frame[None])


# -- collation and encoder -------------------------------------------------------------------
def test_collate_pads_variable_lengths_with_masks(hands):
    modality = make(num_keypoints=21, dims=2, **SMALL)
    values = hands[0]
    items = [modality.preprocess(values[:3]), None, modality.preprocess(values[3]),
             modality.preprocess(values[4:9])]
    batch = modality.collate(items)
    assert tuple(batch.values.shape) == (4, 5, 21, 2)
    assert batch.mask.sum(dim=1).tolist() == [3, 0, 1, 5]
    assert batch.present.tolist() == [True, False, True, True]
    assert bool((batch.values[~batch.mask] == 0).all())
    assert torch.equal(batch.values[0, :3], torch.from_numpy(items[0]))


@pytest.mark.parametrize("pool", ["mean", "last"])
@pytest.mark.parametrize("encoder", ["reference", "tcn"])
def test_encoder_outputs_do_not_depend_on_padding(hands, pool, encoder):
    values = hands[0]
    pooled = make(num_keypoints=21, dims=2, pool=pool, encoder=encoder, **SMALL)
    seq = make(num_keypoints=21, dims=2, pool=pool, output="sequence", encoder=encoder, **SMALL)
    short, long = pooled.preprocess(values[:2]), pooled.preprocess(values[2:9])
    torch.manual_seed(0)
    encoder = pooled.build_encoder().eval()
    torch.manual_seed(0)
    seq_encoder = seq.build_encoder().eval()
    with torch.no_grad():
        alone = encoder(pooled.collate([short])).values
        padded = encoder(pooled.collate([short, long]))
        seq_out = seq_encoder(seq.collate([short, long]))
    assert tuple(padded.values.shape) == (2, 16) and padded.mask is None
    torch.testing.assert_close(padded.values[:1], alone, atol=1e-5, rtol=1e-5)
    assert tuple(seq_out.values.shape) == (2, 7, 16)
    assert seq_out.mask.sum(dim=1).tolist() == [2, 7]
    if pool == "mean":  # same weights: the pooled output is the masked mean of the sequence
        torch.testing.assert_close(seq_out.pooled(), padded.values, atol=1e-5, rtol=1e-5)


def test_fit_infers_flat_frame_size_and_state_round_trips(hands, tmp_path):
    modality = make(**SMALL)
    with pytest.raises(ValueError, match="frame size is unknown"):
        modality.build_encoder()
    modality.fit(hands[0][:50])
    assert modality.frame_shape == (42,)
    assert modality.build_encoder().input_size == 42
    modality.save_state(tmp_path)
    assert json.loads((tmp_path / "position.json").read_text()) ["frame_shape"] == [42]
    loaded = make(**SMALL)
    loaded.load_state(tmp_path)
    assert loaded.frame_shape == (42,) and loaded.fingerprint() == modality.fingerprint()
    with pytest.raises(ValueError, match=r"frames of shape \(40,\), expected \(42\)"):
        loaded.preprocess([0.0] * 40)
    with pytest.raises(ValueError, match="does not exist"):
        make().load_state(tmp_path / "elsewhere")


# -- normalisation ---------------------------------------------------------------------------
def test_channels_are_standardised_by_default_like_every_sequence_modality():
    """``normalize`` is an option of every sequence modality with the same default: an IMU
    moved from ``gesture`` to ``position`` keeps its per-channel scaling."""
    rng = np.random.default_rng(0)
    train = [rng.normal(size=(20, 3)) * [1.0, 100.0, 0.01] + [0.0, 50.0, -3.0] for _ in range(8)]
    modality = PositionModality("imu", PositionOptions())
    modality.fit(train)
    out = np.concatenate([modality.preprocess(x) for x in train])
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=0), 1.0, atol=1e-3)
    raw = PositionModality("imu", PositionOptions(normalize="none"))
    raw.fit(train)
    np.testing.assert_array_equal(raw.preprocess(train[0]), train[0].astype(np.float32))


def test_a_run_saved_before_normalize_existed_keeps_its_preprocessing(tmp_path):
    """A position state file written when the modality had no ``normalize`` (its pipeline
    has only the declared transforms) loads as ``normalize="none"`` when the spec does not
    set the option, and is refused when the spec asks for a standardisation."""
    rng = np.random.default_rng(1)
    train = [rng.normal(size=(12, 4)) * 10 for _ in range(5)]
    old = PositionModality("p", PositionOptions(normalize="none"))
    old.fit(train)
    old.save_state(tmp_path)
    state = json.loads((tmp_path / "position.json").read_text())
    assert state["pipeline"]["transforms"] == []  # what the modality used to write
    loaded = PositionModality("p", PositionOptions())  # the old run's spec: no normalize
    loaded.load_state(tmp_path)
    assert loaded.options.normalize == "none"
    np.testing.assert_array_equal(loaded.preprocess(train[0]), old.preprocess(train[0]))
    with pytest.raises(ValueError, match="saved transforms differ"):
        PositionModality("p", PositionOptions(normalize="standard")).load_state(tmp_path)


def test_relative_to_center_and_scale(hands):
    frames = np.asarray(hands[0][:4], dtype=np.float32).reshape(4, 21, 2)
    moved = frames + np.array([0.3, -0.2], dtype=np.float32)  # the wrist is no longer (0, 0)
    kp = {"num_keypoints": 21, "dims": 2}
    rel = make(relative_to=0, **kp).preprocess(moved)
    np.testing.assert_allclose(rel, frames, atol=1e-6)
    assert not rel[:, 0].any()
    centred = make(center="mean", **kp).preprocess(moved)
    np.testing.assert_allclose(centred.mean(axis=(0, 1)), 0.0, atol=1e-6)
    np.testing.assert_allclose(centred, frames - frames.mean(axis=(0, 1)), atol=1e-6)
    wrist = make(center=0, **kp).preprocess(moved)
    np.testing.assert_allclose(wrist[:, 0].mean(axis=0), 0.0, atol=1e-6)
    scaled = make(scale="max_abs", **kp).preprocess(moved * 7)
    assert np.abs(scaled).max() == pytest.approx(1.0)
    std = make(scale="std", center="mean", **kp).preprocess(moved * 7)
    assert std.std() == pytest.approx(1.0, rel=1e-5)
    zeros = make(scale="std", **kp).preprocess([0.0] * 42)
    assert not zeros.any()  # no scale to undo: stays zero, no NaN


# -- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value, options, message",
    [
        ([0.1] * 41 + [float("nan")], {"num_keypoints": 21, "dims": 2}, "non-finite value nan"),
        ([[0.1, float("inf")]], {}, "non-finite value inf"),
        ([0.1] * 40, {"num_keypoints": 21, "dims": 2}, "num_keypoints=21 x dims=2 = 42"),
        ([0.1] * 41, {"dims": 2}, "multiple of dims=2"),
        (np.zeros((2, 20, 2)), {"num_keypoints": 21, "dims": 2}, r"expected \(21, 2\)"),
        (np.zeros((2, 21, 2, 1)), {}, "expected keypoints"),
        (3.5, {}, "got a single number"),
        ([], {}, "empty"),
        (np.zeros((0, 21, 2)), {}, "empty"),
        ("gone.npy", {}, "file not found"),
        ("not an array", {}, "expected an array"),
        (np.zeros((5, 42)), {"max_length": 3}, "more than max_length=3; set truncate=True"),
        (np.zeros((2, 42)), {"relative_to": 0}, "relative_to need keypoints"),
        (np.zeros((2, 3, 2)), {"center": 4}, "center=4, but frames have only 3 keypoints"),
    ],
)
def test_bad_input_says_what_was_expected(tmp_path, value, options, message):
    with pytest.raises(ValueError, match=message):
        make(tmp_path, **options).preprocess(value)


def test_truncate_keeps_the_first_frames():
    seq = np.arange(5 * 4, dtype=np.float32).reshape(5, 4)
    np.testing.assert_array_equal(make(max_length=3, truncate=True).preprocess(seq), seq[:3])


def test_options_are_checked():
    with pytest.raises(ValidationError, match="kernel_size must be odd"):
        PositionOptions(kernel_size=4)
    with pytest.raises(ValidationError, match="relative_to=21 is not a keypoint index"):
        PositionOptions(num_keypoints=21, dims=2, relative_to=21)
    with pytest.raises(ValidationError, match="conv_channels"):
        PositionOptions(conv_channels=[])


def test_spec_with_a_column_list_validates():
    spec = {
        "data": {"path": "keypoints_labeled.csv"},
        "modalities": {"hand": {"plugin": "position", "column": KEYPOINTS,
                                "options": {"num_keypoints": 21, "dims": 2, "relative_to": 0}}},
        "heads": {"sign": {"target": "label"}},
    }
    assert validate_spec(spec).modalities["hand"].columns == KEYPOINTS
    spec["modalities"]["hand"]["options"]["kernel_size"] = 4
    with pytest.raises(SpecError, match="modalities.hand.options.kernel_size"):
        validate_spec(spec)


# -- learning --------------------------------------------------------------------------------
def test_small_model_learns_hand_signs(hands):
    values, labels = hands
    probe = train_probe(make(num_keypoints=21, dims=2, **SMALL), values[:480], labels[:480],
                        epochs=10, lr=1e-2, n_classes=4)
    accuracy = probe.accuracy(values[480:], labels[480:])
    assert probe.losses[-1] < 0.5 * probe.losses[0], probe.losses
    assert accuracy > 0.75, f"held-out accuracy {accuracy:.2f} (4 classes, majority ~0.33)"


def test_steps_split_a_flat_row_into_frames():
    row = np.arange(32, dtype=np.float32)  # x0, y0, x1, y1, ... of a 16-frame trajectory
    def raw(**options) -> PositionModality:
        return PositionModality("p", PositionOptions(normalize="none", **options))

    flat = raw(steps=16).preprocess(row)
    np.testing.assert_array_equal(flat, row.reshape(16, 2))
    keypoints = raw(steps=16, dims=2).preprocess(row)
    assert keypoints.shape == (16, 1, 2)
    with pytest.raises(ValueError, match="expected a multiple of steps=5"):
        raw(steps=5).preprocess(row)
    with pytest.raises(ValueError, match="got 3 frames, expected steps=16"):
        raw(steps=16).preprocess(np.zeros((3, 2)))


def test_reference_only_options_with_another_encoder_are_named_as_ignored(hands, capsys):
    """``conv_channels`` and ``kernel_size`` shape the reference encoder only: with one that
    ``"auto"`` chose (MiniRocket for these 50 rows) or another named, fitting says they do
    nothing; with ``"reference"``, or left out, it says nothing."""
    make(conv_channels=[32], kernel_size=1).fit(hands[0][:50])
    err = capsys.readouterr().err
    assert ("warning: modality 'hand': conv_channels, kernel_size shape only encoder "
            "'reference'; encoder 'minirocket' (chosen by 'auto') ignores them") in err
    make(encoder="tcn", kernel_size=5).fit(hands[0][:50])
    assert "kernel_size shape only encoder 'reference'; encoder 'tcn' ignores" in \
        capsys.readouterr().err
    make(encoder="reference", conv_channels=[32]).fit(hands[0][:50])
    make(hidden_size=16).fit(hands[0][:50])
    assert "warning" not in capsys.readouterr().err
