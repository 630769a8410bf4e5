"""The ``gesture`` modality: motion / sensor sequences ``[T, C]``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmcore.io import check_finite, load_array, split_last_axis
from mmcore.sequence.modality import SequenceModality
from mmcore_plugin_gesture.options import GestureOptions

if TYPE_CHECKING:  # torch is imported to collate and to build the encoder, not to check a spec
    from mmcore.batch import ModalityBatch
    from mmcore.encoder import Encoder


class GestureModality(SequenceModality[GestureOptions]):
    """Sequences of ``C`` channels per time step, from the row or from ``.npy`` / ``.csv`` /
    ``.json`` files.

    A value is nested lists ``[T, C]``, a numpy array, a JSON string, a file path, or a flat
    list (one cell, or a multi-column value: the cells of the spec's ``column`` list in
    order), split by the ``channels`` / ``steps`` options. ``preprocess`` applies the declared
    ``transforms`` and then, unless ``normalize="none"``, standardises each channel with the
    training split's mean and std; it returns float32 ``[T', C']``. ``collate`` pads to
    ``[B, T_max, C']`` with a ``[B, T_max]`` mask.

    Fitted state (``fit``, saved by ``save_state`` in ``gesture.json``): the channel count as
    read and the transforms' fitted statistics (:class:`mmcore.sequence.SequencePipeline`).
    """

    state_file = "gesture.json"

    def __init__(
        self, name: str, options: GestureOptions, root: Path | None = None, *,
        columns: Sequence[str] = (),
    ) -> None:
        super().__init__(name, options, root, columns=columns)
        self._channels: int | None = None

    @property
    def channels(self) -> int | None:
        """``C`` as read, from the options or the training data; ``None`` before fitting."""
        return self.options.channels or self._channels

    @property
    def output_channels(self) -> int | None:
        """Channels per step after the transforms (the encoder's input size)."""
        c = self.channels
        return None if c is None else self.pipeline.output_channels(c)

    # -- fitted state -------------------------------------------------------------------
    def fit_rows(self, values: Sequence[Any], contexts: Sequence[Mapping[str, Any]]) -> None:
        self._channels = None
        channels = self.options.channels
        if channels is None:
            for i, value in enumerate(values):
                try:
                    channels = self._read(value, None).shape[1]
                except ValueError as exc:
                    raise ValueError(f"training value {i} of {self.name!r}: {exc}") from None
                break
        if channels is None:
            raise ValueError(f"gesture modality {self.name!r}: no training values to fit")
        self._channels = int(channels)
        self.fit_transforms(values, self.read, contexts)

    def own_state(self) -> dict[str, Any]:
        return {"channels": self._channels}

    def load_own_state(self, state: Mapping[str, Any]) -> None:
        channels = state.get("channels")
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive int, got {channels!r}")
        self._channels = channels

    # -- data -----------------------------------------------------------------------------
    def preprocess_row(self, value: Any, context: Mapping[str, Any]) -> np.ndarray:
        """One raw value (and its row's context columns) -> float32 ``[T', C']``, transformed
        and normalised as declared.

        Raises ``ValueError`` for unreadable values, missing files, empty sequences, a wrong
        number of channels or steps, NaN/inf, and sequences longer than ``max_length``
        without ``truncate``; ``RuntimeError`` when a fitted step is used before ``fit``.
        """
        arr = self.read(value)
        return self.transform(arr, context)

    def collate(self, items: Sequence[np.ndarray | None]) -> ModalityBatch:
        """``values [B, T_max, C']``, ``mask [B, T_max]``, ``present [B]``; missing samples
        are all-padding rows."""
        import torch

        from mmcore.collate import pad_sequences

        channels = self.output_channels
        empty = (channels,) if channels is not None else None
        return pad_sequences(items, empty_shape=empty, dtype=torch.float32)

    def collate_stacked(self, values: np.ndarray) -> ModalityBatch:
        """:meth:`collate` for same-length samples, all present, in one call."""
        import torch

        from mmcore.collate import stacked_sequences

        return stacked_sequences(values, dtype=torch.float32)

    def build_encoder(self) -> Encoder:
        channels = self.output_channels
        if channels is None:
            raise ValueError(
                f"gesture modality {self.name!r}: the channel count is unknown; set the "
                "option channels, or fit() the modality on training values first"
            )
        o = self.options
        pool = o.pool or ("last" if self.encoder_kind == "reference" else "mean")
        return self.sequence_encoder(channels, o.output_size, pool, o.output)

    # -- helpers ------------------------------------------------------------------------
    def read(self, value: Any) -> np.ndarray:
        """``value`` as a checked ``[T, C]`` array, before the transforms."""
        return self._read(value, self.channels)

    def _read(self, value: Any, channels: int | None) -> np.ndarray:
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
        from mmcore.collate import limit_length  # imported once per process, then a lookup

        return limit_length(arr, o.max_length, o.truncate)
