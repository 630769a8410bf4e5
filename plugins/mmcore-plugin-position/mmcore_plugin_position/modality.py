"""The ``position`` modality: coordinate sequences ``[T, K, D]`` or flat frames ``[T, F]``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmcore.io import check_finite, load_array, split_last_axis
from mmcore.sequence.modality import SequenceModality
from mmcore_plugin_position.options import PositionOptions

if TYPE_CHECKING:  # torch is imported to collate and to build the encoder, not to check a spec
    from mmcore.batch import ModalityBatch
    from mmcore.encoder import Encoder

LAYOUTS = "keypoints [T, K, D], frames [T, F] or one flat frame [F]"


class PositionModality(SequenceModality[PositionOptions]):
    """Keypoints over time, read from the row or from ``.npy`` / ``.csv`` / ``.json`` files.

    A value is nested lists, a numpy array, a JSON string, a file path, or a multi-column
    value (a list of the cells of the spec's ``column`` list, in that order), which is one
    frame. ``preprocess`` returns float32 ``[T, K, D]`` when ``num_keypoints`` or ``dims`` is
    set (or the value is 3-D) and ``[T, F]`` otherwise; ``collate`` pads them to
    ``[B, T_max, ...]`` with a ``[B, T_max]`` step mask. The declared ``transforms`` run on
    the flat frames ``[T, K * D]`` after the per-sequence normalisation; when they change the
    number of values per frame (``select``, ``diff``) the output is flat frames ``[T', F']``.

    Fitted state (saved by ``save_state`` in ``position.json``): the shape of one frame as
    read, taken from the first training value when the options do not fix it, and the
    transforms' fitted statistics.

    ``encoder="reference"``: 1-D convolutions over time (``conv_channels``, ``kernel_size``),
    then a one-way LSTM, no output projection.
    """

    state_file = "position.json"

    def __init__(
        self, name: str, options: PositionOptions, root: Path | None = None, *,
        columns: Sequence[str] = (),
    ) -> None:
        super().__init__(name, options, root, columns=columns)
        self._fitted_frame: tuple[int, ...] | None = None

    @property
    def input_frame_shape(self) -> tuple[int, ...] | None:
        """Shape of one frame as read: ``(K, D)`` or ``(F,)``; ``None`` before fitting when
        the options leave it open."""
        o = self.options
        if o.num_keypoints is not None and o.dims is not None:
            return (o.num_keypoints, o.dims)
        return self._fitted_frame

    @property
    def frame_shape(self) -> tuple[int, ...] | None:
        """Shape of one frame of ``preprocess``'s output (after the transforms)."""
        frame = self.input_frame_shape
        if frame is None:
            return None
        values = self.pipeline.output_channels(math.prod(frame))
        return frame if values == math.prod(frame) else (values,)

    # -- fitted state -------------------------------------------------------------------
    def fit_rows(self, values: Sequence[Any], contexts: Sequence[Mapping[str, Any]]) -> None:
        self._fitted_frame = None
        for value in values:
            try:
                self._fitted_frame = tuple(int(s) for s in self.read(value).shape[1:])
            except ValueError as exc:
                raise ValueError(f"first training value of {self.name!r}: {exc}") from None
            break
        self.fit_transforms(values, self._read_flat, contexts)

    def own_state(self) -> dict[str, Any]:
        frame = list(self._fitted_frame) if self._fitted_frame is not None else None
        return {"frame_shape": frame}

    def load_own_state(self, state: Mapping[str, Any]) -> None:
        frame = state.get("frame_shape")
        if frame is not None and not (
            isinstance(frame, list) and frame and all(isinstance(s, int) and s > 0 for s in frame)
        ):
            raise ValueError(f"frame_shape must be a list of positive ints, got {frame!r}")
        self._fitted_frame = tuple(frame) if frame is not None else None

    # -- data -----------------------------------------------------------------------------
    def preprocess_row(self, value: Any, context: Mapping[str, Any]) -> np.ndarray:
        """One raw value -> float32 ``[T, K, D]`` or ``[T, F]``, normalised as the options say.

        Raises ``ValueError`` for unreadable values, missing files, empty sequences, frames
        of the wrong shape, NaN/inf, and sequences longer than ``max_length`` without
        ``truncate``.
        """
        arr = self.read(value)
        if not self.pipeline.transforms:
            return np.ascontiguousarray(arr, dtype=np.float32)
        out = self.transform(arr.reshape(arr.shape[0], -1), context)
        if out.shape[1] == math.prod(arr.shape[1:]):
            out = out.reshape(out.shape[0], *arr.shape[1:])
        return out

    def read(self, value: Any) -> np.ndarray:
        """``value`` arranged, checked and normalised per sequence, before the transforms."""
        arr = self._arrange(load_array(value, self.root, allow_empty=False))
        if self.options.steps is not None and arr.shape[0] != self.options.steps:
            raise ValueError(f"got {arr.shape[0]} frames, expected steps={self.options.steps}")
        self._check_frame(arr)
        check_finite(arr)
        from mmcore.collate import limit_length  # imported once per process, then a lookup

        arr = limit_length(arr, self.options.max_length, self.options.truncate)
        return self._normalise(arr)

    def _read_flat(self, value: Any) -> np.ndarray:
        arr = self.read(value)
        return arr.reshape(arr.shape[0], -1)

    def collate(self, items: Sequence[np.ndarray | None]) -> ModalityBatch:
        """``values [B, T_max, K, D]`` (or ``[B, T_max, F]``), ``mask [B, T_max]``,
        ``present [B]``; missing samples are all-padding rows."""
        import torch

        from mmcore.collate import pad_sequences

        return pad_sequences(items, empty_shape=self.frame_shape, dtype=torch.float32)

    def collate_stacked(self, values: np.ndarray) -> ModalityBatch:
        """:meth:`collate` for same-length samples, all present, in one call."""
        import torch

        from mmcore.collate import stacked_sequences

        return stacked_sequences(values, dtype=torch.float32)

    def build_encoder(self) -> Encoder:
        frame = self.frame_shape
        if frame is None:
            raise ValueError(
                f"position modality {self.name!r}: the frame size is unknown; set the options "
                "num_keypoints and dims, or fit() the modality on training values first"
            )
        o = self.options
        return self.sequence_encoder(math.prod(frame), o.hidden_size, o.pool, o.output)

    def reference_design(self) -> dict[str, Any]:
        o = self.options
        return {"frontend": "conv", "conv_channels": o.conv_channels,
                "kernel_size": o.kernel_size, "bidirectional": False, "output_size": None}

    # -- helpers ------------------------------------------------------------------------
    def _arrange(self, arr: np.ndarray) -> np.ndarray:
        """``arr`` as ``[T, F]`` frames, or ``[T, K, D]`` when the options ask for keypoints."""
        o = self.options
        if arr.ndim == 0 or arr.ndim > 3:
            got = "a single number" if arr.ndim == 0 else f"an array of shape {arr.shape}"
            raise ValueError(f"expected {LAYOUTS}, got {got}")
        if arr.ndim == 1 and o.steps is not None:  # a flat row of steps x values: S frames
            try:
                arr = split_last_axis(arr, (o.steps, None), ("steps", "values per frame"))
            except ValueError as exc:
                raise ValueError(f"cannot split a flat value into frames: {exc}") from None
        if o.num_keypoints is None and o.dims is None:
            return arr[None] if arr.ndim == 1 else arr
        if arr.ndim == 3:
            return arr
        if arr.ndim == 2 and arr.shape == (o.num_keypoints, o.dims):
            return arr[None]  # one frame given as K rows of D coordinates
        if arr.ndim == 1:
            arr = arr[None]
        try:
            return split_last_axis(arr, (o.num_keypoints, o.dims), ("num_keypoints", "dims"))
        except ValueError as exc:
            raise ValueError(f"cannot split frames into keypoints: {exc}") from None

    def _check_frame(self, arr: np.ndarray) -> None:
        o = self.options
        expected: tuple[int | None, ...]
        if o.num_keypoints is not None and o.dims is not None:
            expected, source = (o.num_keypoints, o.dims), "num_keypoints x dims in the options"
        elif self._fitted_frame is not None:
            expected, source = self._fitted_frame, "the frame shape of the training data"
        elif arr.ndim == 3 and (o.num_keypoints is not None or o.dims is not None):
            expected, source = (o.num_keypoints, o.dims), "the options"
        else:
            return
        got = arr.shape[1:]
        if len(got) != len(expected) or any(
            e is not None and g != e for g, e in zip(got, expected, strict=True)
        ):
            shown = "(" + ", ".join("any" if e is None else str(e) for e in expected) + ")"
            raise ValueError(f"frames of shape {got}, expected {shown} ({source})")

    def _normalise(self, arr: np.ndarray) -> np.ndarray:
        o = self.options
        needs_keypoints = [
            n for n in ("relative_to", "center")
            if getattr(o, n) is not None and not (n == "center" and o.center == "mean")
        ]
        if needs_keypoints and arr.ndim != 3:
            raise ValueError(
                f"{' and '.join(needs_keypoints)} need keypoints [T, K, D], got flat frames of "
                f"shape {arr.shape}; set num_keypoints and dims to split them"
            )
        if o.relative_to is not None:
            k = _keypoint(arr, o.relative_to, "relative_to")
            arr = arr - arr[:, k : k + 1, :]
        if o.center == "mean":  # keypoints: the mean position; flat frames: each channel's mean
            axes = (0, 1) if arr.ndim == 3 else (0,)
            arr = arr - arr.mean(axis=axes, keepdims=True)
        elif o.center is not None:
            k = _keypoint(arr, o.center, "center")
            arr = arr - arr[:, k : k + 1, :].mean(axis=0, keepdims=True)
        if o.scale is not None:
            spread = float(np.abs(arr).max() if o.scale == "max_abs" else arr.std())
            if spread > 0.0:  # an all-zero (or constant, for std) sequence has no scale to undo
                arr = arr / spread
        return arr


def _keypoint(arr: np.ndarray, index: int, option: str) -> int:
    if index >= arr.shape[1]:
        raise ValueError(f"{option}={index}, but frames have only {arr.shape[1]} keypoints")
    return index
