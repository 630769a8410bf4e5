"""Options of the ``audio`` modality (pydantic + numpy only: validating a spec imports no torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mmcore.modality import ModalityOptions
from mmcore_plugin_audio.mel import mel_filterbank


class AudioAugment(BaseModel):
    """Training-time augmentation of log-mel batches (SpecAugment-style; off unless declared),
    applied to training batches only with draws seeded by ``(train.seed, epoch)``. Values are
    in the units of the (normalised) log-mel spectrogram."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    time_mask: float = Field(0.0, ge=0.0, lt=1.0, description="longest span of frames set to "
                             "zero, as a fraction of each clip's length (one span)")
    freq_mask: int = Field(0, ge=0, description="most adjacent mel bands set to zero (one span)")
    noise: float = Field(0.0, ge=0.0, description="std of Gaussian noise added to every value")

    @property
    def active(self) -> bool:
        return bool(self.time_mask or self.freq_mask or self.noise)


class AudioOptions(ModalityOptions):
    """How waveforms become log-mel spectrograms, and the encoder's sizes.

    Preprocessing: decode, downmix to mono, resample to ``sample_rate``, short-time Fourier
    transform (Hann window of ``win_length`` samples, zero-padded to ``n_fft``, every
    ``hop_length`` samples, frames centred on ``t * hop_length``), power spectrum, mel
    filterbank, ``log(mel + log_offset)``, then optional per-utterance normalisation.
    A clip of ``n`` samples (after resampling) gives ``1 + n // hop_length`` frames.
    """

    model_config = ConfigDict(use_attribute_docstrings=True)

    sample_rate: int = Field(default=16000, gt=0)
    """Hz every clip is resampled to (soxr, high quality). 16 kHz suits speech in general;
    8 kHz recordings such as FSDD lose nothing at ``sample_rate: 8000``."""
    n_fft: int = Field(default=400, ge=2)
    """FFT size in samples (25 ms at 16 kHz); gives ``n_fft // 2 + 1`` frequency bins."""
    win_length: int | None = Field(default=None, ge=1)
    """Window length in samples, at most ``n_fft``; ``None`` means ``n_fft``."""
    hop_length: int = Field(default=160, ge=1)
    """Samples between frames (10 ms at 16 kHz)."""
    n_mels: int = Field(default=64, ge=1)
    f_min: float = Field(default=0.0, ge=0.0)
    f_max: float | None = Field(default=None, gt=0.0)
    """Upper edge of the top mel band in Hz; ``None`` means ``sample_rate / 2``."""
    mel_scale: Literal["htk", "slaney"] = "htk"
    """``htk``: 2595 log10(1 + f/700); ``slaney``: linear below 1 kHz, log above (librosa's
    default)."""
    mel_norm: Literal["slaney"] | None = None
    """``slaney``: scale each triangle to unit area (librosa's default); ``None``: peak 1."""
    log_offset: float = Field(default=1e-6, gt=0.0)
    """Added to the mel power before the log, so silence stays finite."""
    normalize: Literal["utterance", "band", "none"] = "utterance"
    """``utterance``: subtract the clip's mean log-mel and divide by its standard deviation;
    ``band``: the same per mel band over time (cepstral-style mean/variance normalisation);
    ``none``: raw log-mel."""
    max_seconds: float | None = Field(default=None, gt=0.0)
    """Longest clip accepted; longer ones are an error unless ``truncate``."""
    truncate: bool = False
    """Keep the first ``max_seconds`` of longer clips instead of failing."""

    encoder: Literal["auto", "reference", "minirocket"] = "auto"
    """``auto``: ``minirocket`` when the training split has at most 2,000 clips, the output
    is pooled and no CNN/LSTM option is set, else ``reference`` (chosen when the modality is
    fitted, saved with the run; docs/sequences.md#the-encoders). ``reference``: the CNN
    (+ LSTM) below. ``minirocket``: fixed dilated convolutions over time across the mel
    bands, biases fitted on the training split, PPV features, dropout, then a linear layer to
    ``feature_size`` (``mmcore.sequence.minirocket``; the small-data encoder, see
    docs/sequences.md#small-data). The CNN/LSTM options do not apply to it."""
    minirocket_features: int = Field(default=10_000, ge=84)
    """minirocket: number of features (rounded down to a multiple of 84)."""
    max_dilations: int = Field(default=32, ge=1)
    """minirocket: most dilations per kernel."""

    conv_channels: tuple[int, ...] = Field(default=(16, 32, 32), min_length=1)
    """Output channels of each 3x3 convolution over (time, mel)."""
    time_pool: tuple[int, ...] | None = None
    """Max-pool factor along time after each convolution; ``None``: 2 after the first two,
    1 after the rest. Mel is always pooled by 2."""
    feature_size: int = Field(default=128, ge=1)
    """Size of each time step's projection of the last feature map."""
    lstm: bool = True
    """Run an LSTM over the projected time steps."""
    lstm_hidden: int = Field(default=128, ge=1)
    lstm_layers: int = Field(default=1, ge=1)
    bidirectional: bool = False
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    pool: Literal["mean", "last"] = "mean"
    """Pooled output: the mean over real steps, or (with ``lstm``) the LSTM state at the last
    real step."""
    output: Literal["pooled", "sequence"] = "pooled"
    """``pooled``: ``[B, D]`` (mean over real steps); ``sequence``: ``[B, T', D]`` + mask at
    the pooled time resolution."""
    augment: AudioAugment = Field(default_factory=AudioAugment)
    """Training-time augmentation: ``time_mask``, ``freq_mask``, ``noise`` (off)."""

    @property
    def time_pools(self) -> tuple[int, ...]:
        """The time pooling factor after each convolution."""
        if self.time_pool is not None:
            return self.time_pool
        return tuple(2 if i < 2 else 1 for i in range(len(self.conv_channels)))

    @model_validator(mode="after")
    def _consistent(self) -> AudioOptions:
        if self.win_length is not None and self.win_length > self.n_fft:
            raise ValueError(f"win_length ({self.win_length}) must not exceed n_fft ({self.n_fft})")
        nyquist = self.sample_rate / 2
        top = nyquist if self.f_max is None else self.f_max
        if top > nyquist:
            raise ValueError(f"f_max ({top} Hz) is above half the sample rate ({nyquist} Hz)")
        if self.f_min >= top:
            raise ValueError(f"f_min ({self.f_min} Hz) must be below f_max ({top} Hz)")
        if self.time_pool is not None:
            if len(self.time_pool) != len(self.conv_channels):
                raise ValueError(
                    f"time_pool has {len(self.time_pool)} factors for "
                    f"{len(self.conv_channels)} convolutions; give one per convolution"
                )
            if any(p < 1 for p in self.time_pool):
                raise ValueError(f"time_pool factors must be at least 1, got {self.time_pool}")
        if self.encoder == "minirocket" and self.output != "pooled":
            raise ValueError("encoder 'minirocket' gives one feature vector per clip: set "
                             "output to 'pooled'")
        if self.pool == "last" and not self.lstm:
            raise ValueError("pool: last needs lstm: true (it picks the LSTM's last state)")
        if self.augment.freq_mask >= self.n_mels:
            raise ValueError(f"augment.freq_mask ({self.augment.freq_mask}) must be below "
                             f"n_mels ({self.n_mels})")
        if any(c < 1 for c in self.conv_channels):
            raise ValueError(f"conv_channels must be positive, got {self.conv_channels}")
        # an empty mel band is a configuration error: say so when the spec is validated
        mel_filterbank(self.sample_rate, self.n_fft, self.n_mels, self.f_min, self.f_max,
                       self.mel_scale, self.mel_norm)
        return self
