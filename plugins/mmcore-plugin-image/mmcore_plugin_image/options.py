"""Options of the ``image`` modality (pydantic only: validating a spec imports no torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mmcore.modality import ModalityOptions


class ImageAugment(BaseModel):
    """Training-time augmentation of image batches (off unless declared): one random affine
    transform per sample (the same for every frame of a sample), applied to training batches
    only with draws seeded by ``(train.seed, epoch)``. Areas moved in from outside the image
    are 0 in normalised units (the ``mean`` colour)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    flip: float = Field(0.0, ge=0.0, le=1.0, description="probability of a horizontal flip")
    rotate: float = Field(0.0, ge=0.0, le=180.0, description="most rotation, in degrees")
    scale: float = Field(0.0, ge=0.0, lt=1.0, description="most zoom in or out (0.1: ±10%)")
    translate: float = Field(0.0, ge=0.0, lt=1.0, description="most shift, as a fraction of "
                             "the image size (a random crop)")

    @property
    def active(self) -> bool:
        return any((self.flip, self.rotate, self.scale, self.translate))


class ImageOptions(ModalityOptions):
    """How images are decoded, resized and normalised, and the encoder's sizes.

    Preprocessing: every image becomes ``channels`` x ``size`` float32 values, scaled to
    ``[0, 1]`` and then normalised as ``(x - mean) / std`` per channel.

    Encoder: three convolutions (``conv_channels``, ``kernel_sizes``, ``strides``), each
    followed by optional BatchNorm and ReLU, with 2x2 max pooling after the first two when
    ``max_pool``; the last feature map is averaged to a ``grid`` x ``grid`` map and projected to
    ``feature_size``. With ``frames`` an LSTM then runs over the per-frame features.
    """

    model_config = ConfigDict(use_attribute_docstrings=True)

    size: tuple[int, int] = (32, 32)
    """Height and width every image is resized to (an int means a square)."""
    channels: Literal[1, 3] = 3
    """1: grayscale (ITU-R 601-2 luma, as Pillow's "L"); 3: RGB. Alpha is dropped."""
    mean: tuple[float, ...] = (0.5,)
    """Per-channel mean subtracted after scaling to [0, 1]: one value, or one per channel."""
    std: tuple[float, ...] = (0.5,)
    """Per-channel standard deviation divided by: one value, or one per channel."""
    resample: Literal["nearest", "bilinear", "bicubic", "lanczos"] = "bilinear"
    """Pillow filter used to resize (antialiased when shrinking)."""
    frames: bool = False
    """Each value is a sequence of frames (a list of images or a [T, H, W(, C)] array)
    stored as ``[T, C, H, W]``; a single image then counts as one frame."""
    max_frames: int | None = Field(default=None, ge=1)
    """Longest frame sequence accepted; longer ones are an error unless ``truncate``."""
    truncate: bool = False
    """Keep the first ``max_frames`` frames of longer sequences instead of failing."""

    conv_channels: tuple[int, int, int] = (16, 32, 64)
    kernel_sizes: tuple[int, int, int] = (5, 3, 3)
    strides: tuple[int, int, int] = (1, 1, 1)
    max_pool: bool = True
    """2x2 max pooling after the first and second convolution."""
    batch_norm: bool = True
    grid: int = Field(default=4, ge=1)
    """Pooled features average the last feature map down to ``grid`` x ``grid`` cells and
    project them all, which keeps the coarse layout; 1 is a global average."""
    feature_size: int = Field(default=128, ge=1)
    """Size of an image's (a frame's) features: the output size for single images. With
    ``output: sequence`` for single images, the size of each position's projection."""
    lstm_hidden: int = Field(default=128, ge=1)
    """LSTM hidden size over frames (``frames`` only); the output size is this, doubled
    when ``bidirectional``."""
    lstm_layers: int = Field(default=1, ge=1)
    bidirectional: bool = False
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    pool: Literal["mean", "last"] = "mean"
    """Pooled output over frames (``frames`` only): the mean of the LSTM outputs over real
    frames, or the LSTM state at the last real frame."""
    output: Literal["pooled", "sequence"] = "pooled"
    """``pooled``: ``[B, D]``. ``sequence``: ``[B, T, D]`` over frames with ``frames``, over
    the positions of the last feature map (row-major) for single images."""
    augment: ImageAugment = Field(default_factory=ImageAugment)
    """Training-time augmentation: ``flip``, ``rotate``, ``scale``, ``translate`` (off)."""

    @field_validator("size", mode="before")
    @classmethod
    def _square(cls, value: object) -> object:
        return (value, value) if isinstance(value, int) else value

    @field_validator("mean", "std", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return (value,) if isinstance(value, int | float) else value

    @field_validator("size", "conv_channels", "kernel_sizes", "strides")
    @classmethod
    def _positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(v < 1 for v in value):
            raise ValueError(f"every value must be at least 1, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _per_channel(self) -> ImageOptions:
        for name in ("mean", "std"):
            values = getattr(self, name)
            if len(values) not in (1, self.channels):
                raise ValueError(
                    f"{name} has {len(values)} values; give one, or one per channel "
                    f"({self.channels})"
                )
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {list(self.std)}")
        if self.pool == "last" and not self.frames:
            raise ValueError("pool: last needs frames: true (it picks the LSTM's last frame)")
        return self
