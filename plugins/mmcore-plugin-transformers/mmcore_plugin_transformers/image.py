"""``hf_image``: images -> the pretrained image processor's pixel values -> a vision model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from mmcore_plugin_image.decode import load_image

from mmcore.batch import ModalityBatch
from mmcore.collate import stack_fixed, stacked_fixed
from mmcore_plugin_transformers.encoder import Kind
from mmcore_plugin_transformers.modality import PretrainedModality
from mmcore_plugin_transformers.options import ImageOptions


class PretrainedImage(PretrainedModality[ImageOptions]):
    """Images (a path relative to the data root, bytes, a ``datasets`` image, a PIL image or a
    pixel array), decoded with Pillow as RGB and prepared by the model's image processor
    (``AutoImageProcessor``: resize, crop, normalise); ``preprocess`` gives float32
    ``[C, H, W]``."""

    kind: ClassVar[Kind] = "image"

    def load_processor(self, source: str, **kwargs: Any) -> Any:
        from transformers import AutoImageProcessor

        return AutoImageProcessor.from_pretrained(source, **kwargs)

    def check_processor(self) -> None:
        self._shape = self._pixels(np.zeros((8, 8, 3), dtype=np.float32)).shape

    def _pixels(self, rgb: np.ndarray) -> np.ndarray:
        # pixels are already in [0, 1]: the processor must not divide by 255 again
        out = self.processor(images=[rgb], do_rescale=False, return_tensors="np")
        return np.asarray(out["pixel_values"][0], dtype=np.float32)

    def preprocess(self, value: Any) -> np.ndarray:
        self._require()
        return self._pixels(load_image(value, self.root, channels=3))

    def collate(self, items: Sequence[np.ndarray | None]) -> ModalityBatch:
        self._require()
        return stack_fixed(items, shape=tuple(self._shape), dtype=torch.float32)

    def collate_stacked(self, values: np.ndarray) -> ModalityBatch:
        return stacked_fixed(values, dtype=torch.float32)
