"""``hf_audio``: recordings -> the feature extractor's input values -> a speech model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from mmcore_plugin_audio.decode import load_waveform, resample

from mmcore.batch import ModalityBatch
from mmcore.collate import pad_sequences, stacked_sequences
from mmcore.errors import DataError
from mmcore_plugin_transformers.backbone import min_audio_samples
from mmcore_plugin_transformers.encoder import Kind
from mmcore_plugin_transformers.modality import PretrainedModality
from mmcore_plugin_transformers.options import AudioOptions


class PretrainedAudio(PretrainedModality[AudioOptions]):
    """Recordings (a path relative to the data root, encoded bytes, a ``datasets`` audio value
    or samples), decoded with soundfile, mixed to mono, resampled (soxr) to the feature
    extractor's ``sampling_rate`` and prepared by it (``AutoFeatureExtractor``, e.g. zero mean
    and unit variance); ``preprocess`` gives float32 ``[n]``, ``collate`` pads them with the
    real samples as ``mask``. For models that take raw waveforms (``input_values``:
    wav2vec2, HuBERT, WavLM)."""

    kind: ClassVar[Kind] = "audio"

    def load_processor(self, source: str, **kwargs: Any) -> Any:
        from transformers import AutoFeatureExtractor

        return AutoFeatureExtractor.from_pretrained(source, **kwargs)

    @property
    def rate(self) -> int:
        return int(self.processor.sampling_rate)

    def check_processor(self) -> None:
        names = getattr(self.processor, "model_input_names", ["input_values"])
        if "input_values" not in names:
            raise DataError(
                f"modality {self.name!r}: {type(self.processor).__name__} makes "
                f"{', '.join(names)}, not raw input_values; hf_audio supports models that read "
                "waveforms (wav2vec2, HuBERT, WavLM)"
            )

    def _min_samples(self) -> int:
        return min_audio_samples(self.config)

    def preprocess(self, value: Any) -> np.ndarray:
        self._require()
        samples, rate = load_waveform(value, self.root, self.rate)
        samples = resample(samples, rate, self.rate)
        if self.options.max_seconds is not None:
            samples = samples[: max(1, int(self.options.max_seconds * self.rate))]
        if len(samples) < self._min_samples():
            raise ValueError(
                f"recording has {len(samples)} samples at {self.rate} Hz, fewer than the "
                f"{self._min_samples()} the model needs for one frame"
            )
        out = self.processor(samples, sampling_rate=self.rate, return_tensors="np")
        return np.asarray(out["input_values"][0], dtype=np.float32)

    def collate(self, items: Sequence[np.ndarray | None]) -> ModalityBatch:
        return pad_sequences(items, empty_shape=(), dtype=torch.float32)

    def collate_stacked(self, values: np.ndarray) -> ModalityBatch:
        return stacked_sequences(values, dtype=torch.float32)
