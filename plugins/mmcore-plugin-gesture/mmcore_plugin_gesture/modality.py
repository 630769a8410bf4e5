"""The ``gesture`` modality: motion / sensor sequences ``[T, C]``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmcore.batch import ModalityBatch
from mmcore.collate import limit_length, pad_sequences
from mmcore.io import check_finite, load_array, read_json_state, split_last_axis, write_json_state
from mmcore.modality import Modality
from mmcore_plugin_gesture.encoder import GestureEncoder
from mmcore_plugin_gesture.options import GestureOptions

STATE_FILE = "gesture.json"


class GestureModality(Modality[GestureOptions]):
    """Sequences of ``C`` channels per time step, from the row or from ``.npy`` / ``.csv`` /
    ``.json`` files.

    A value is nested lists ``[T, C]``, a numpy array, a JSON string, a file path, or a flat
    list (one cell, or a multi-column value: the cells of the spec's ``column`` list in
    order), split by the ``channels`` / ``steps`` options. ``preprocess`` returns float32
    ``[T, C]``, standardised per channel with the training split's mean and std unless
    ``normalize="none"``; ``collate`` pads to ``[B, T_max, C]`` with a ``[B, T_max]`` mask.

    Fitted state (``fit``, saved as JSON by ``save_state``): the channel count and, for
    ``normalize="standard"``, each channel's mean and standard deviation over every step
    of every training sequence (a constant channel gets std 1).
    """

    options_class = GestureOptions

    def __init__(
        self, name: str, options: GestureOptions | None = None, root: Path | None = None
    ) -> None:
        super().__init__(name, options, root)
        self._channels: int | None = None
        self._mean: np.ndarray | None = None
        self._std: np.ndarray | None = None

    @property
    def channels(self) -> int | None:
        """``C``, from the options or the training data; ``None`` before fitting otherwise."""
        return self.options.channels or self._channels

    # -- fitted state -------------------------------------------------------------------
    def fit(self, values: Sequence[Any]) -> None:
        self._channels, self._mean, self._std = None, None, None
        channels = self.options.channels
        count, mean, m2 = 0, None, None
        for i, value in enumerate(values):
            try:
                arr = self._read(value, channels).astype(np.float64)
            except ValueError as exc:
                raise ValueError(f"training value {i} of {self.name!r}: {exc}") from None
            if channels is None:
                channels = arr.shape[1]
            if self.options.normalize == "none":
                break  # only the channel count is needed
            # Chan et al.'s pairwise update: exact in float64 without holding every sequence
            n_b, mean_b = arr.shape[0], arr.mean(axis=0)
            m2_b = ((arr - mean_b) ** 2).sum(axis=0)
            if mean is None:
                count, mean, m2 = n_b, mean_b, m2_b
                continue
            delta, total = mean_b - mean, count + n_b
            mean = mean + delta * (n_b / total)
            m2 = m2 + m2_b + delta**2 * (count * n_b / total)
            count = total
        if channels is None:
            raise ValueError(f"gesture modality {self.name!r}: no training values to fit")
        self._channels = int(channels)
        if mean is not None and m2 is not None:
            std = np.sqrt(m2 / count)
            self._mean, self._std = mean, np.where(std > 0.0, std, 1.0)

    def save_state(self, directory: Path) -> None:
        write_json_state(Path(directory) / STATE_FILE, self._state())

    def load_state(self, directory: Path) -> None:
        path = Path(directory) / STATE_FILE
        state = read_json_state(path, f"gesture modality {self.name!r}")
        try:
            channels = state["channels"]
            mean, std = state.get("mean"), state.get("std")
            if not isinstance(channels, int) or channels < 1:
                raise ValueError(f"channels must be a positive int, got {channels!r}")
            if (mean is None) != (std is None):
                raise ValueError("give both mean and std, or neither")
            if mean is not None:
                mean, std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
                if mean.shape != (channels,) or std.shape != (channels,) or (std <= 0).any():
                    raise ValueError(f"mean and std must be {channels} numbers, std > 0")
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}: invalid gesture state: {exc}") from None
        self._channels, self._mean, self._std = channels, mean, std

    def fingerprint(self) -> str:
        return f"{super().fingerprint()}|{json.dumps(self._state(), sort_keys=True)}"

    def _state(self) -> dict[str, Any]:
        return {
            "channels": self._channels,
            "mean": None if self._mean is None else self._mean.tolist(),
            "std": None if self._std is None else self._std.tolist(),
        }

    # -- data -----------------------------------------------------------------------------
    def preprocess(self, value: Any) -> np.ndarray:
        """One raw value -> float32 ``[T, C]``, standardised unless ``normalize="none"``.

        Raises ``ValueError`` for unreadable values, missing files, empty sequences, a wrong
        number of channels or steps, NaN/inf, and sequences longer than ``max_length``
        without ``truncate``; ``RuntimeError`` when standardising before ``fit``.
        """
        arr = self._read(value, self.channels)
        if self.options.normalize == "standard":
            if self._mean is None or self._std is None:
                raise RuntimeError(
                    f"gesture modality {self.name!r} has normalize='standard' but is not "
                    "fitted: call fit() on the training values (or load_state) first"
                )
            arr = (arr - self._mean) / self._std
        return np.ascontiguousarray(arr, dtype=np.float32)

    def collate(self, items: Sequence[np.ndarray | None]) -> ModalityBatch:
        """``values [B, T_max, C]``, ``mask [B, T_max]``, ``present [B]``; missing samples
        are all-padding rows."""
        channels = self.channels
        empty = (channels,) if channels is not None else None
        return pad_sequences(items, empty_shape=empty, dtype=torch.float32)

    def build_encoder(self) -> GestureEncoder:
        channels = self.channels
        if channels is None:
            raise ValueError(
                f"gesture modality {self.name!r}: the channel count is unknown; set the "
                "option channels, or fit() the modality on training values first"
            )
        o = self.options
        return GestureEncoder(
            input_size=channels,
            hidden_size=o.hidden_size,
            num_layers=o.num_layers,
            bidirectional=o.bidirectional,
            dropout=o.dropout,
            output_size=o.output_size,
            pool=o.pool,
            output=o.output,
        )

    # -- helpers ------------------------------------------------------------------------
    def _read(self, value: Any, channels: int | None) -> np.ndarray:
        """``value`` as a checked ``[T, C]`` float32 array, before normalisation."""
        o = self.options
        arr = load_array(value, self.root, allow_empty=False)
        if arr.ndim == 1:
            if o.channels is not None or o.steps is not None:
                try:
                    arr = split_last_axis(arr, (o.steps, o.channels), ("steps", "channels"))
                except ValueError as exc:
                    raise ValueError(f"cannot split a flat sequence: {exc}") from None
            else:
                arr = arr[:, None]  # a single-channel stream
        elif arr.ndim != 2:
            got = "a single number" if arr.ndim == 0 else f"an array of shape {arr.shape}"
            raise ValueError(
                f"expected a sequence [T, C] or a flat list of steps x channels values, got {got}"
            )
        if o.steps is not None and arr.shape[0] != o.steps:
            raise ValueError(f"got {arr.shape[0]} time steps, expected steps={o.steps}")
        if channels is not None and arr.shape[1] != channels:
            source = "the option channels" if o.channels else "the training data"
            hint = "" if o.channels or o.steps else "; set channels (or steps) to split flat values"
            raise ValueError(
                f"got {arr.shape[1]} channels per step, expected {channels} (from {source}){hint}"
            )
        check_finite(arr)
        return limit_length(arr, o.max_length, o.truncate)
