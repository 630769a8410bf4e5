"""Reading raw values that modality plugins share: file paths, bytes, arrays in cells or files.

Every function raises ``ValueError`` with a readable reason; the data layer adds the split,
row and column to it.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from mmcore import paths

ARRAY_SUFFIXES = (".npy", ".csv", ".json", ".wav", ".flac", ".ogg")
#: sound files read as arrays ``[T, channels]`` (soundfile), e.g. sensor streams stored as audio
SOUND_SUFFIXES = (".wav", ".flac", ".ogg")


def resolve_path(value: str | Path, root: Path | None) -> Path:
    """A path from the data, resolved against ``root`` (the data file's folder) if relative.

    Inside :func:`mmcore.paths.confine` (``mmcore serve``, ``mmcore predict --root``) only a
    file inside the confined root is resolved (:func:`mmcore.paths.resolve_inside`)."""
    confined = paths.active()
    if confined is not None:
        return paths.resolve_inside(value, confined.root)
    path = Path(value).expanduser()
    if not path.is_absolute() and root is not None:
        path = root / path
    if not path.is_file():
        raise ValueError(f"file not found: {path}")
    return path


def open_binary(value: Any, root: Path | None) -> tuple[BinaryIO, str]:
    """A readable binary stream and a description, from a path, raw bytes, or a
    ``datasets`` Image/Audio-style dict ``{"bytes": ..., "path": ...}``."""
    if isinstance(value, dict):
        if value.get("bytes"):
            if not isinstance(value["bytes"], bytes | bytearray | memoryview):
                raise ValueError(f"'bytes' holds {type(value['bytes']).__name__}, not bytes")
            return io.BytesIO(bytes(value["bytes"])), str(value.get("path") or "<bytes>")
        if value.get("path"):
            value = value["path"]
        else:
            raise ValueError(f"expected 'bytes' or 'path' in {sorted(value)}")
    if isinstance(value, bytes | bytearray | memoryview):
        return io.BytesIO(bytes(value)), "<bytes>"
    if isinstance(value, str | Path):
        path = resolve_path(value, root)
        # confined, a file is described as the client named it (not where the root is)
        return path.open("rb"), str(value) if paths.active() is not None else str(path)
    raise ValueError(
        f"expected a file path, bytes or a dict with 'bytes'/'path', got {type(value).__name__}"
    )


def load_array(value: Any, root: Path | None, *, allow_empty: bool = True) -> np.ndarray:
    """A float32 array from nested lists / a numpy array in the cell, or from a ``.npy``,
    ``.csv`` (comma-separated numbers, one row per time step, an optional header) or
    ``.json`` (nested lists) file whose path is in the cell, or a ``.wav`` / ``.flac`` /
    ``.ogg`` file read with soundfile as ``[T, channels]`` samples in [-1, 1] (a multichannel
    recording as a sequence; the file's sample rate is not resampled). A cell string that is not a
    file path but parses as JSON nested lists is read as such. With ``allow_empty=False`` an
    array without any value (e.g. ``[]`` or a ``[0, 3]`` array) is a ``ValueError``."""
    if isinstance(value, str) and not value.lower().endswith(ARRAY_SUFFIXES):
        stripped = value.strip()
        if stripped.startswith("["):
            try:
                value = json.loads(stripped)
            except json.JSONDecodeError as exc:
                raise ValueError(f"cell is neither a file path nor a JSON array: {exc}") from None
        else:
            raise ValueError(
                f"expected an array, nested lists or a path ending in {', '.join(ARRAY_SUFFIXES)}, "
                f"got {value[:60]!r}"
            )
    if isinstance(value, str | Path):
        path = resolve_path(value, root)
        suffix = path.suffix.lower()
        try:
            if suffix == ".npy":
                data = np.load(path, allow_pickle=False)
            elif suffix in SOUND_SUFFIXES:
                data = _read_sound(path)
            elif suffix == ".json":
                data = json.loads(path.read_text())
            else:
                data = _read_csv_numbers(path)
        except (OSError, ValueError) as exc:
            where = value if paths.active() is not None else path
            raise ValueError(f"cannot read {where}: {exc}") from None
        value = data
    try:
        arr = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not a numeric array (ragged or non-numeric values): {exc}") from None
    if not allow_empty and arr.size == 0:
        raise ValueError(f"empty array of shape {arr.shape}: expected at least one value")
    return arr


def _read_sound(path: Path) -> np.ndarray:
    import soundfile

    try:
        data, _ = soundfile.read(str(path), dtype="float32", always_2d=True)
    except soundfile.LibsndfileError as exc:
        raise ValueError(str(exc)) from None
    return data


def _read_csv_numbers(path: Path) -> np.ndarray:
    text = path.read_text().strip().splitlines()
    if not text:
        raise ValueError("empty file")
    first = text[0].split(",")
    try:
        [float(x) for x in first]
        skip = 0
    except ValueError:
        skip = 1  # a header row
    return np.loadtxt(path, delimiter=",", skiprows=skip, dtype=np.float32, ndmin=2)


def check_finite(arr: np.ndarray) -> np.ndarray:
    """``arr`` unchanged, or ``ValueError`` naming the first non-finite position."""
    if not np.isfinite(arr).all():
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(f"non-finite value {arr[where]} at index {where}")
    return arr


def split_last_axis(
    arr: np.ndarray, sizes: tuple[int | None, int | None], names: tuple[str, str]
) -> np.ndarray:
    """``arr [..., N]`` with its last axis split into ``[..., a, b]`` where ``a * b == N``.

    ``sizes = (a, b)``; either may be ``None`` and is then inferred from ``N``. ``names`` are
    the option names of ``a`` and ``b``, used in the error raised when ``N`` does not fit.
    """
    a, b = sizes
    n = int(arr.shape[-1]) if arr.ndim else 1
    if a is None and b is None:
        raise ValueError(f"give {names[0]} or {names[1]} to split {n} values")
    if a is not None and b is not None:
        fits, wanted = n == a * b, f"{names[0]}={a} x {names[1]}={b} = {a * b} values"
    elif a is not None:
        fits, wanted = n % a == 0, f"a multiple of {names[0]}={a}"
    else:
        assert b is not None
        fits, wanted = n % b == 0, f"a multiple of {names[1]}={b}"
    if arr.ndim == 0 or n == 0 or not fits:
        raise ValueError(f"got {n} values, expected {wanted}")
    a = a if a is not None else n // b  # type: ignore[operator]
    return arr.reshape(*arr.shape[:-1], a, n // a)


def write_json_state(path: Path, state: Any) -> None:
    """Write a modality's fitted state (JSON-able) to ``path``, creating its folder (one line:
    json's C encoder, which indenting would bypass)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state, sort_keys=True) + "\n")


def read_json_state(path: Path, what: str) -> dict[str, Any]:
    """The JSON object :func:`write_json_state` wrote, or ``ValueError`` naming ``what`` and
    the file when it is missing, unreadable or not an object."""
    if not path.is_file():
        raise ValueError(f"no saved state for {what}: {path} does not exist (save_state writes it)")
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read the saved state of {what} from {path}: {exc}") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: the saved state of {what} must be a JSON object")
    return state
