"""The ``image`` modality: the shared contract, decoding of every accepted value kind on real
MNIST PNGs from av_digits, resizing/normalisation values, bad input, and the encoder's shapes."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from mmcore_plugin_image.modality import ImageModality
from mmcore_plugin_image.options import ImageOptions
from PIL import Image
from pydantic import ValidationError

from mmcore.testing import ModalityContract, shared_data


@pytest.fixture(scope="module")
def digits() -> tuple[Path, list[dict[str, str]]]:
    pairs = shared_data("av_digits", "pairs.csv", anchor=__file__)
    with pairs.open() as f:
        return pairs.parent, list(csv.DictReader(f))


def _png(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(pixels).save(path)
    return path


def _modality(root: Path | None = None, **options) -> ImageModality:
    return ImageModality("image", ImageOptions(**options), root=root)


# -- the shared contract, on generated PNGs (runs without the shared data too) ---------------
def _gray(seed: int, h: int = 20, w: int = 24) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w), dtype=np.uint8)


class TestImageContract(ModalityContract):
    plugin = "image"
    options = {"channels": 1, "size": [16, 16], "conv_channels": [4, 8, 8], "feature_size": 8}
    bad_samples = (
        np.full((8, 8), np.nan, dtype=np.float32),
        np.zeros((8, 8, 2)),  # two channels
        b"not an image",
        "missing.png",
        np.full((4, 4), 2.0),  # float pixels outside [0, 1]
    )

    def make_samples(self, tmp_path: Path) -> list:
        _png(tmp_path / "a.png", _gray(0))
        rgb = np.random.default_rng(1).integers(0, 256, size=(30, 10, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, format="PNG")
        return ["a.png", buffer.getvalue(), _gray(2, 8, 8), {"bytes": None, "path": "a.png"}]


class TestImageFramesContract(ModalityContract):
    plugin = "image"
    options = {"channels": 3, "size": 12, "frames": True, "conv_channels": [4, 4, 8],
               "feature_size": 8, "lstm_hidden": 6, "bidirectional": True}
    bad_samples = ([_gray(0), np.full((8, 8), np.nan)], np.zeros((3, 8, 8)), 7)

    def make_samples(self, tmp_path: Path) -> list:
        paths = [str(_png(tmp_path / f"f{i}.png", _gray(i))) for i in range(3)]
        return [paths, paths[:1], [_gray(5), _gray(6, 12, 12)],
                np.stack([np.repeat(_gray(i, 8, 8)[..., None], 3, -1) for i in range(4)])]


# -- decoding real images ------------------------------------------------------------------
def test_real_png_values_match_pillow(digits) -> None:
    root, rows = digits
    path = rows[0]["image"]
    reference = np.asarray(Image.open(root / path), dtype=np.float32) / 255.0
    assert reference.shape == (28, 28)
    out = _modality(root, channels=1, size=28).preprocess(path)
    assert out.shape == (1, 28, 28) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], (reference - 0.5) / 0.5, atol=1e-6)
    rgb = _modality(root, channels=3, size=28, mean=[0.1, 0.2, 0.3], std=[1, 2, 4])
    out3 = rgb.preprocess(path)
    assert out3.shape == (3, 28, 28)
    for c, (m, s) in enumerate([(0.1, 1), (0.2, 2), (0.3, 4)]):
        np.testing.assert_allclose(out3[c], (reference - m) / s, atol=1e-6)


def test_resize_agrees_with_pillow(digits) -> None:
    root, rows = digits
    path = rows[1]["image"]
    out = _modality(root, channels=1, size=(40, 36), mean=0.0, std=1.0).preprocess(path)
    assert out.shape == (1, 40, 36)
    # Pillow's 8-bit resize of the same image rounds to 1/255; the float resize must agree
    expected = np.asarray(Image.open(root / path).resize((36, 40), Image.Resampling.BILINEAR))
    np.testing.assert_allclose(out[0], expected / 255.0, atol=1.01 / 255)


def test_every_value_kind_decodes_the_same(digits) -> None:
    root, rows = digits
    rel = rows[2]["image"]
    data = (root / rel).read_bytes()
    pil = Image.open(root / rel)
    pixels = np.asarray(pil)
    modality = _modality(root, channels=1, size=28)
    expected = modality.preprocess(rel)
    kinds = {
        "absolute path": str(root / rel),
        "Path": root / rel,
        "bytes": data,
        "datasets bytes dict": {"bytes": data, "path": None},
        "datasets path dict": {"bytes": None, "path": rel},
        "PIL image": pil,
        "uint8 array": pixels,
        "float array": pixels.astype(np.float32) / 255.0,
        "nested lists": pixels.tolist(),
        "[H, W, 1] array": pixels[..., None],
    }
    for name, value in kinds.items():
        np.testing.assert_allclose(modality.preprocess(value), expected, atol=1e-6, err_msg=name)


def test_colour_conversions() -> None:
    red = np.zeros((4, 4, 3), dtype=np.uint8)
    red[..., 0] = 255
    gray = _modality(channels=1, size=4, mean=0.0, std=1.0).preprocess(red)
    np.testing.assert_allclose(gray, 0.299, atol=1e-6)  # ITU-R 601-2 luma of pure red
    rgba = np.dstack([red, np.full((4, 4), 7, dtype=np.uint8)])
    rgb = _modality(channels=3, size=4, mean=0.0, std=1.0).preprocess(rgba)
    np.testing.assert_allclose(rgb, np.stack([np.ones((4, 4)), np.zeros((4, 4)),
                                              np.zeros((4, 4))]), atol=1e-6)
    grey_to_rgb = _modality(channels=3, size=4, mean=0.0, std=1.0).preprocess(
        np.full((4, 4), 51, dtype=np.uint8))
    np.testing.assert_allclose(grey_to_rgb, 0.2, atol=1e-6)


def test_sixteen_bit_png_keeps_its_range(tmp_path: Path) -> None:
    pixels = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)
    _png(tmp_path / "deep.png", pixels)
    out = _modality(tmp_path, channels=1, size=2, mean=0.0, std=1.0).preprocess("deep.png")
    np.testing.assert_allclose(out[0], pixels / 65535.0, atol=1e-6)


def test_preprocessing_is_deterministic_and_fingerprinted(digits) -> None:
    root, rows = digits
    a = _modality(root).preprocess(rows[3]["image"])
    b = _modality(root).preprocess(rows[3]["image"])
    assert np.array_equal(a, b)
    base = _modality(root).fingerprint()
    assert _modality(root, conv_channels=(8, 8, 8)).fingerprint() == base  # encoder only
    assert _modality(root, size=28).fingerprint() != base
    assert _modality(root, mean=0.4).fingerprint() != base


# -- bad input -------------------------------------------------------------------------------
def test_bad_input_errors_say_what_was_expected(tmp_path: Path) -> None:
    (tmp_path / "garbage.png").write_bytes(b"\x89PNG not really" * 10)
    modality = _modality(tmp_path, channels=1, size=8)
    cases = {
        "garbage.png": r"cannot decode image .*garbage\.png.*expected a file Pillow can read",
        "absent.png": r"file not found: .*absent\.png",
        b"": r"cannot decode image <bytes>",
    }
    for value, message in cases.items():
        with pytest.raises(ValueError, match=message):
            modality.preprocess(value)
    with pytest.raises(ValueError, match=r"non-finite value nan at index \(1, 2"):
        nan = np.zeros((3, 3), dtype=np.float32)
        nan[1, 2] = np.nan
        modality.preprocess(nan)
    with pytest.raises(ValueError, match=r"\[H, W\] or \[H, W, C\].*got shape \(3, 8, 8, 1\)"):
        modality.preprocess(np.zeros((3, 8, 8, 1), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"channels last.*got shape \(3, 28, 28\)"):
        modality.preprocess(np.zeros((3, 28, 28), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\], got 0\.\.255"):
        modality.preprocess(np.array([[0.0, 255.0]]))
    with pytest.raises(ValueError, match=r"0\.\.255.*got -1\.\.3"):
        modality.preprocess(np.array([[-1, 3]]))
    with pytest.raises(ValueError, match="numeric pixel array"):
        modality.preprocess([["a", "b"]])
    with pytest.raises(ValueError, match="expected an image path.*got int"):
        modality.preprocess(3)
    with pytest.raises(ValueError, match="list of 2 images.*frames: true"):
        modality.preprocess([np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8)])


def test_frame_limits_and_errors(tmp_path: Path) -> None:
    frames = [np.full((6, 6), 10 * i, dtype=np.uint8) for i in range(5)]
    strict = _modality(tmp_path, channels=1, size=6, frames=True, max_frames=3)
    with pytest.raises(ValueError, match="5 frames, more than max_frames=3.*truncate: true"):
        strict.preprocess(frames)
    cut = _modality(tmp_path, channels=1, size=6, frames=True, max_frames=3, truncate=True)
    out = cut.preprocess(frames)
    assert out.shape == (3, 1, 6, 6)
    np.testing.assert_allclose(out[:, 0, 0, 0], [(10 * i / 255 - 0.5) / 0.5 for i in range(3)],
                               atol=1e-6)
    with pytest.raises(ValueError, match=r"frame 1: file not found"):
        strict.preprocess([frames[0], "nope.png"])
    with pytest.raises(ValueError, match=r"frame array must have shape \[T, H, W, C\]"):
        strict.preprocess(np.zeros((2, 6, 6), dtype=np.uint8))
    one = strict.preprocess(frames[0])  # a single image is a one-frame sequence
    assert one.shape == (1, 1, 6, 6)


def test_truncated_real_png_is_refused(digits, tmp_path: Path) -> None:
    root, rows = digits
    data = (root / rows[4]["image"]).read_bytes()
    (tmp_path / "half.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"decode image .*half\.png: image file is truncated"):
        _modality(tmp_path, channels=1, size=28).preprocess("half.png")


def test_options_are_validated() -> None:
    assert ImageOptions(size=28).size == (28, 28)
    assert ImageOptions(mean=0.3).mean == (0.3,)
    with pytest.raises(ValidationError, match="mean has 2 values; give one, or one per channel"):
        ImageOptions(channels=3, mean=[0.1, 0.2])
    with pytest.raises(ValidationError, match="std must be positive"):
        ImageOptions(std=0)
    with pytest.raises(ValidationError, match="pool: last needs frames: true"):
        ImageOptions(pool="last")
    with pytest.raises(ValidationError, match="at least 1"):
        ImageOptions(size=(0, 4))


# -- collation and encoder ---------------------------------------------------------------------
def test_collate_and_encoder_shapes(digits) -> None:
    root, rows = digits
    modality = _modality(root, channels=1, size=28, output="sequence")
    arrays = [modality.preprocess(r["image"]) for r in rows[:3]]
    batch = modality.collate([arrays[0], None, arrays[1], arrays[2]])
    assert tuple(batch.values.shape) == (4, 1, 28, 28) and batch.mask is None
    assert batch.present.tolist() == [True, False, True, True]
    torch.manual_seed(0)
    encoder = modality.build_encoder().eval()
    features = encoder(batch)
    # 28 -> pooled twice (ceil) -> 7 x 7 positions of the last map, row-major
    assert tuple(features.values.shape) == (4, 49, 128)
    assert features.mask.tolist() == [[True] * 49, [False] * 49, [True] * 49, [True] * 49]
    pooled = _modality(root, channels=1, size=28).build_encoder()
    assert pooled(batch).values.shape == (4, 128)


def test_frame_encoder_ignores_padding(digits) -> None:
    root, rows = digits
    modality = _modality(root, channels=1, size=16, frames=True, output="sequence",
                         conv_channels=(4, 8, 8), feature_size=8, lstm_hidden=5)
    short = modality.preprocess([r["image"] for r in rows[:2]])
    long = modality.preprocess([r["image"] for r in rows[2:7]])
    torch.manual_seed(0)
    encoder = modality.build_encoder().eval()
    with torch.no_grad():
        together = encoder(modality.collate([short, long]))
        alone = encoder(modality.collate([short]))
    assert together.mask.tolist() == [[True] * 2 + [False] * 3, [True] * 5]
    assert together.values.shape == (2, 5, 5)
    torch.testing.assert_close(together.values[0, :2], alone.values[0], atol=1e-5, rtol=1e-5)
    assert bool((together.values[0, 2:] == 0).all())
    last = _modality(root, channels=1, size=16, frames=True, pool="last",
                     conv_channels=(4, 8, 8), feature_size=8, lstm_hidden=5)
    assert last.build_encoder()(modality.collate([short, long])).values.shape == (2, 5)


@pytest.mark.parametrize("frames", [False, True])
def test_eval_features_do_not_depend_on_absent_rows(digits, frames: bool) -> None:
    """In eval every row is encoded and absent ones zeroed (one graph for export); the
    features equal those of the training path, which encodes present rows only."""
    from mmcore.layers import masked_rnns

    root, rows = digits
    options = {"channels": 1, "size": 16, "conv_channels": (4, 8, 8), "feature_size": 8}
    if frames:
        options.update(frames=True, lstm_hidden=5)
    modality = _modality(root, **options)
    one = [r["image"] for r in rows[:3]] if frames else rows[0]["image"]
    two = [r["image"] for r in rows[3:5]] if frames else rows[1]["image"]
    batch = modality.collate([modality.preprocess(one), None, modality.preprocess(two)])
    torch.manual_seed(0)
    encoder = modality.build_encoder()
    encoder.eval()
    with torch.no_grad():
        evaluated = encoder(batch).values
        encoder.training = True  # only the branch: dropout is 0 and BatchNorm keeps eval stats
        for module in encoder.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eval()
        indexed = encoder(batch).values
        encoder.training = False
        with masked_rnns():
            masked = encoder(batch).values
    torch.testing.assert_close(evaluated, indexed, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(masked, indexed, atol=1e-6, rtol=1e-5)
    assert bool((evaluated[1] == 0).all())
