"""The ``image`` modality: images (or frame sequences) -> normalised float arrays -> CNN."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mmcore.modality import Modality
from mmcore_plugin_image.decode import is_single_image, load_image, resize
from mmcore_plugin_image.options import ImageOptions

if TYPE_CHECKING:  # torch is imported to collate and to build the encoder, not to check a spec
    from mmcore.batch import ModalityBatch
    from mmcore_plugin_image.encoder import ImageEncoder

#: Options that change what ``preprocess`` returns (the cache key); the encoder's sizes don't.
PREPROCESS_FIELDS = ("size", "channels", "mean", "std", "resample", "frames", "max_frames",
                     "truncate")
#: Bumped whenever the preprocessing code changes its output for the same options.
PREPROCESS_VERSION = 1


class ImageModality(Modality[ImageOptions]):
    """Images -> float32 ``[C, H, W]``, or frame sequences -> ``[T, C, H, W]`` (``frames``).

    Values are paths (relative to ``root``), encoded bytes, ``datasets`` Image values (PIL
    images or ``{"bytes", "path"}`` dicts) or pixel arrays ``[H, W]`` / ``[H, W, C]``
    (channels last). With ``frames``, a value is a list of such images or a ``[T, H, W, C]``
    array. Pixels are scaled to ``[0, 1]``, converted to ``channels``, resized to ``size``
    and normalised with ``mean``/``std``.

    Collated batches: single images ``values [B, C, H, W]`` (no mask); frames
    ``values [B, T, C, H, W]`` with ``mask [B, T]``.
    """

    def fingerprint(self) -> str:
        chosen = self.options.model_dump(mode="json", include=set(PREPROCESS_FIELDS))
        return json.dumps({"image": PREPROCESS_VERSION, **chosen}, sort_keys=True)

    def preprocess(self, value: Any) -> np.ndarray:
        if not self.options.frames:
            if _looks_like_frames(value):
                raise ValueError(
                    f"got a list of {len(value)} images, but this modality takes one image per "
                    "value; set the option frames: true for frame sequences"
                )
            return self._image(value)
        frames = self._frame_list(value)
        limit = self.options.max_frames
        if limit is not None and len(frames) > limit:
            if not self.options.truncate:
                raise ValueError(
                    f"{len(frames)} frames, more than max_frames={limit}; raise max_frames or "
                    f"set truncate: true to keep the first {limit}"
                )
            frames = frames[:limit]
        out = []
        for i, frame in enumerate(frames):
            try:
                out.append(self._image(frame))
            except ValueError as exc:
                raise ValueError(f"frame {i}: {exc}") from None
        return np.stack(out)

    def _image(self, value: Any) -> np.ndarray:
        opts = self.options
        pixels = resize(load_image(value, self.root, opts.channels), opts.size, opts.resample)
        mean = np.asarray(opts.mean, dtype=np.float32)
        std = np.asarray(opts.std, dtype=np.float32)
        return np.ascontiguousarray(((pixels - mean) / std).transpose(2, 0, 1), dtype=np.float32)

    def _frame_list(self, value: Any) -> list[Any]:
        if is_single_image(value):
            return [value]
        if isinstance(value, np.ndarray):
            if value.ndim == 2:
                return [value]
            if value.ndim != 4:
                # [T, H, W] and [H, W, C] look alike: refuse rather than guess
                raise ValueError(
                    f"a frame array must have shape [T, H, W, C] (or [H, W] for one frame), got "
                    f"{tuple(value.shape)}; add a channel axis, or give a list of frames"
                )
            return list(value)
        if isinstance(value, list | tuple):
            if not value:
                raise ValueError("empty list of frames")
            return list(value)
        raise ValueError(
            "expected a list of frames (paths, bytes, PIL images or arrays), a [T, H, W, C] "
            f"array or a single image, got {type(value).__name__}"
        )

    def collate(self, items: Sequence[np.ndarray | None]) -> ModalityBatch:
        import torch

        from mmcore.collate import pad_sequences, stack_fixed

        shape = (self.options.channels, *self.options.size)
        if self.options.frames:
            return pad_sequences(items, empty_shape=shape, dtype=torch.float32)
        return stack_fixed(items, shape=shape, dtype=torch.float32)

    def collate_stacked(self, values: np.ndarray) -> ModalityBatch:
        """:meth:`collate` for same-shape samples, all present, in one call."""
        import torch

        from mmcore.collate import stacked_fixed, stacked_sequences

        if self.options.frames:
            return stacked_sequences(values, dtype=torch.float32)
        return stacked_fixed(values, dtype=torch.float32)

    def augment(self, batch: ModalityBatch, generator: Any) -> ModalityBatch:
        """The declared ``augment`` (flip, rotate, scale, translate) on a training batch."""
        if not self.options.augment.active:
            return batch
        from mmcore_plugin_image.augment import augment_images

        return augment_images(batch, self.options.augment, generator)

    def build_encoder(self) -> ImageEncoder:
        from mmcore_plugin_image.encoder import ImageEncoder

        return ImageEncoder(self.options)


def _looks_like_frames(value: Any) -> bool:
    """A list whose items are whole images (not rows of nested pixel lists)."""
    if not isinstance(value, list | tuple) or not value:
        return False
    first = value[0]
    return is_single_image(first) or (isinstance(first, np.ndarray) and first.ndim >= 2)
