"""The ``audio`` modality: waveforms -> log-mel spectrograms ``[T, n_mels]`` -> CNN (+ LSTM), or
MiniRocket features fitted on the training split (``encoder: "minirocket"``)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmcore.io import read_json_state, write_json_state
from mmcore.modality import Modality
from mmcore_plugin_audio.decode import load_waveform, resample
from mmcore_plugin_audio.features import LogMel
from mmcore_plugin_audio.options import AudioOptions

if TYPE_CHECKING:  # torch is imported to collate and to build the encoder, not to check a spec
    from mmcore.batch import ModalityBatch
    from mmcore.encoder import Encoder
    from mmcore.sequence.minirocket import MiniRocketParameters

#: Options that change what ``preprocess`` returns (the cache key); the encoder's sizes don't.
PREPROCESS_FIELDS = ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels", "f_min",
                     "f_max", "mel_scale", "mel_norm", "log_offset", "normalize", "max_seconds",
                     "truncate")
#: Bumped whenever the preprocessing code changes its output for the same options.
PREPROCESS_VERSION = 1
#: options only the CNN (+ LSTM) uses: a spec that sets one gets it from ``encoder: "auto"``
CNN_OPTIONS = frozenset({"conv_channels", "time_pool", "lstm", "lstm_hidden", "lstm_layers",
                         "bidirectional", "pool"})
#: the fitted state's file in the modality's run-folder directory (``encoder: "minirocket"``)
STATE_FILE = "audio.json"


class AudioModality(Modality[AudioOptions]):
    """Audio clips -> float32 log-mel spectrograms ``[T, n_mels]``, ``T = 1 + n // hop_length``
    for a clip of ``n`` samples at ``sample_rate``.

    Values are paths (relative to ``root``) or bytes of files libsndfile reads, ``datasets``
    Audio values, or sample arrays (taken to be at ``sample_rate``). Clips are downmixed to
    mono and resampled with soxr. Collated batches: ``values [B, T_max, n_mels]`` with
    ``mask [B, T_max]`` (True at real frames); missing clips are all-padding rows.
    """

    def __init__(
        self, name: str, options: AudioOptions, root: Path | None = None, *,
        columns: Sequence[str] = (),
    ) -> None:
        super().__init__(name, options, root, columns=columns)
        self._logmel: LogMel | None = None
        self.minirocket: MiniRocketParameters | None = None
        self._encoder: str | None = options.encoder
        if options.encoder == "auto":  # minirocket gives no sequence: no choice left
            self._encoder = "reference" if options.output != "pooled" else None

    @property
    def encoder_kind(self) -> str:
        """``"reference"`` or ``"minirocket"``: the ``encoder`` option, or what ``"auto"``
        chose when the modality was fitted (``ValueError`` before that)."""
        from mmcore.sequence.modality_options import chosen_encoder

        return chosen_encoder(self._encoder, self.name)

    def fingerprint(self) -> str:
        fields = set(PREPROCESS_FIELDS)
        if self.options.encoder != "reference":  # its fit is cached under this key too
            fields |= {"encoder", "minirocket_features", "max_dilations"}
            # and "auto" chooses by the CNN options a spec sets
            fields |= CNN_OPTIONS & self.options.model_fields_set
        chosen = self.options.model_dump(mode="json", include=fields)
        return json.dumps({"audio": PREPROCESS_VERSION, **chosen}, sort_keys=True)

    # -- fitted state (encoder: "minirocket") ----------------------------------------------
    def fit(self, values: Sequence[Any]) -> None:
        """With ``encoder: "minirocket"`` (or ``"auto"`` on a small training split, see
        :func:`mmcore.sequence.modality.auto_encoder`): fit its dilations, biases and feature
        statistics on the log-mels of at most ``FIT_ROWS`` training clips (a seeded subset);
        clips that cannot be read are left out (preprocessing reports them). Nothing to fit
        otherwise."""
        from mmcore.sequence.modality_options import auto_encoder

        self.minirocket = None
        o = self.options
        self._encoder = o.encoder
        if o.encoder == "auto":
            network = bool(CNN_OPTIONS & o.model_fields_set)
            chosen = auto_encoder(len(values), o.output == "pooled", network)
            self._encoder = "minirocket" if chosen == "minirocket" else "reference"
        if self._encoder != "minirocket":
            return
        from mmcore.sequence.minirocket import FIT_ROWS, fit_minirocket

        rows = range(len(values)) if len(values) <= FIT_ROWS else sorted(
            np.random.RandomState(0).choice(len(values), FIT_ROWS, replace=False))
        arrays = []
        for i in rows:
            try:
                arrays.append(self.preprocess(values[i]))
            except ValueError:
                continue
        if not arrays:
            raise ValueError("no training clip could be read to fit the minirocket encoder")
        self.minirocket = fit_minirocket(arrays, o.minirocket_features, o.max_dilations)

    def save_state(self, directory: Path) -> None:
        if self.minirocket is not None:
            write_json_state(Path(directory) / STATE_FILE, {"minirocket": self.minirocket.state()})

    def load_state(self, directory: Path) -> None:
        """Read the minirocket state; with ``encoder: "auto"``, a state file means "auto"
        chose minirocket, none that it chose the reference design (as every run saved
        before "auto" existed did)."""
        self.minirocket = None
        path = Path(directory) / STATE_FILE
        self._encoder = self.options.encoder
        if self._encoder == "auto":
            self._encoder = "minirocket" if path.is_file() else "reference"
        if self._encoder != "minirocket":
            return
        from mmcore.sequence.minirocket import MiniRocketParameters

        state = read_json_state(path, f"audio modality {self.name!r}")
        if "minirocket" not in state:
            raise ValueError(f"{path}: no 'minirocket' entry (the encoder's fitted state)")
        try:
            self.minirocket = MiniRocketParameters.from_state(state["minirocket"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from None

    def waveform(self, value: Any) -> np.ndarray:
        """One raw value -> mono float32 samples at ``sample_rate``, limited to
        ``max_seconds`` (an error for longer clips unless ``truncate``)."""
        o = self.options
        samples, rate = load_waveform(value, self.root, o.sample_rate)
        if o.max_seconds is not None and samples.size > o.max_seconds * rate:
            if not o.truncate:
                raise ValueError(
                    f"clip lasts {samples.size / rate:.2f} s, longer than max_seconds="
                    f"{o.max_seconds:g}; raise max_seconds or set truncate: true to keep the "
                    "start"
                )
            samples = samples[: math.ceil(o.max_seconds * rate)]
            samples = resample(samples, rate, o.sample_rate)
            return samples[: math.floor(o.max_seconds * o.sample_rate)]
        return resample(samples, rate, o.sample_rate)

    def preprocess(self, value: Any) -> np.ndarray:
        if self._logmel is None:
            self._logmel = LogMel(self.options)
        return self._logmel(self.waveform(value))

    def collate(self, items: Sequence[np.ndarray | None]) -> ModalityBatch:
        import torch

        from mmcore.collate import pad_sequences

        return pad_sequences(items, empty_shape=(self.options.n_mels,), dtype=torch.float32)

    def collate_stacked(self, values: np.ndarray) -> ModalityBatch:
        """:meth:`collate` for same-length samples, all present, in one call."""
        import torch

        from mmcore.collate import stacked_sequences

        return stacked_sequences(values, dtype=torch.float32)

    def augment(self, batch: ModalityBatch, generator: Any) -> ModalityBatch:
        """The declared ``augment`` (time_mask, freq_mask, noise) on a training batch."""
        if not self.options.augment.active:
            return batch
        from mmcore_plugin_audio.augment import augment_spectrograms

        return augment_spectrograms(batch, self.options.augment, generator)

    def build_encoder(self) -> Encoder:
        o = self.options
        if self.encoder_kind == "minirocket":
            from mmcore.sequence.minirocket import MiniRocketEncoder

            if self.minirocket is None:
                raise ValueError(
                    f"audio modality {self.name!r}: the minirocket encoder is not fitted; fit() "
                    "the modality on training clips (or load_state) first"
                )
            return MiniRocketEncoder(self.minirocket, o.feature_size, o.dropout)
        from mmcore_plugin_audio.encoder import AudioEncoder

        return AudioEncoder(o)
