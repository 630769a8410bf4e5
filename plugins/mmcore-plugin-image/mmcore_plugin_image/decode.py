"""Raw image values -> float arrays ``[H, W, C]`` in ``[0, 1]``, decoded and resized by Pillow.

Accepted values: a file path (relative to the data root), raw encoded bytes, a ``datasets``
Image value (a PIL image, or a ``{"bytes": ..., "path": ...}`` dict), or pixels as a numpy
array / nested lists of shape ``[H, W]`` or ``[H, W, C]`` (channels last, C in 1, 3, 4).
Every failure is a ``ValueError`` that says what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from mmcore.io import check_finite, open_binary

RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
#: Weights of ITU-R 601-2 luma, the conversion Pillow's ``convert("L")`` uses.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
#: Pillow modes that hold more than 8 bits per pixel: read as numbers, not converted by Pillow
#: (whose conversion to "L" clips them).
_WIDE_MODES = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0,
               "I": 65535.0, "F": 1.0}
_FILE_KINDS = (str, Path, bytes, bytearray, memoryview, dict)


def is_single_image(value: Any) -> bool:
    """Whether ``value`` is one image by its type (not a list of frames or nested lists)."""
    return isinstance(value, _FILE_KINDS + (Image.Image,))


def load_image(value: Any, root: Path | None, channels: int) -> np.ndarray:
    """One raw image value -> float32 ``[H, W, channels]`` with values in ``[0, 1]``."""
    if isinstance(value, Image.Image):
        return _from_pil(value, channels, "<PIL image>")
    if isinstance(value, _FILE_KINDS):
        stream, where = open_binary(value, root)
        with stream:
            try:
                image = Image.open(stream)
                image.load()
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
                # Pillow's message for an unknown format names the stream object, not the file
                reason = ("not a format Pillow recognises"
                          if isinstance(exc, UnidentifiedImageError) else str(exc))
                raise ValueError(
                    f"cannot decode image {where}: {reason} (expected a file Pillow can read: "
                    "PNG, JPEG, BMP, GIF, TIFF, WebP...)"
                ) from None
            return _from_pil(image, channels, where)
    if isinstance(value, np.ndarray | list | tuple):
        return _from_array(value, channels)
    raise ValueError(
        "expected an image path, encoded bytes, a {'bytes', 'path'} dict, a PIL image or a "
        f"pixel array, got {type(value).__name__}"
    )


def _from_pil(image: Image.Image, channels: int, where: str) -> np.ndarray:
    scale = _WIDE_MODES.get(image.mode)
    if scale is not None:
        pixels = check_finite(np.asarray(image, dtype=np.float32) / scale)
        return _to_channels(_in_unit_range(pixels[..., None], where), channels)
    target = "L" if channels == 1 else "RGB"
    pixels = np.asarray(image.convert(target), dtype=np.float32) / 255.0
    return pixels[..., None] if pixels.ndim == 2 else pixels


def _from_array(value: Any, channels: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"expected a numeric pixel array, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4) or 0 in arr.shape:
        raise ValueError(
            f"expected an image array of shape [H, W] or [H, W, C] with C in 1, 3, 4 "
            f"(channels last, as PIL and datasets give), got shape {tuple(arr.shape)}"
        )
    if arr.dtype == np.uint8:
        pixels = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        pixels = arr.astype(np.float32) / 65535.0
    elif arr.dtype == bool:
        pixels = arr.astype(np.float32)
    elif np.issubdtype(arr.dtype, np.integer):
        if arr.min() < 0 or arr.max() > 255:
            raise ValueError(
                f"integer pixels must lie in 0..255 (or the array be uint16), got "
                f"{arr.min()}..{arr.max()}"
            )
        pixels = arr.astype(np.float32) / 255.0
    else:
        pixels = _in_unit_range(check_finite(arr.astype(np.float32)), "the array")
    return _to_channels(pixels, channels)


def _in_unit_range(pixels: np.ndarray, where: str) -> np.ndarray:
    low, high = float(pixels.min()), float(pixels.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"float pixels of {where} must lie in [0, 1], got {low:g}..{high:g} "
            "(give uint8 0..255, or divide by the maximum value)"
        )
    return pixels


def _to_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """``[H, W, 1|3|4]`` -> ``[H, W, channels]``: alpha dropped, gray repeated or luma taken."""
    if pixels.shape[-1] == 4:
        pixels = pixels[..., :3]
    if pixels.shape[-1] == channels:
        return pixels
    if channels == 3:
        return np.repeat(pixels, 3, axis=-1)
    return (pixels @ LUMA)[..., None]


def resize(pixels: np.ndarray, size: tuple[int, int], resample: str) -> np.ndarray:
    """``[H, W, C]`` float -> ``[height, width, C]``, one 32-bit float Pillow image per
    channel, so no precision is lost to 8-bit rounding."""
    height, width = size
    if pixels.shape[:2] == (height, width):
        return pixels
    planes = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(pixels[..., c])).resize(
                (width, height), RESAMPLE[resample]
            ),
            dtype=np.float32,
        )
        for c in range(pixels.shape[-1])
    ]
    return np.stack(planes, axis=-1)
