"""Options of the ``position`` modality (pydantic only: validating a spec imports no torch)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, NonNegativeInt, PositiveInt, field_validator, model_validator

from mmcore.sequence.modality_options import SequenceOptions


class PositionOptions(SequenceOptions):
    """How ``position`` reads, normalises and encodes coordinate sequences.

    Layout: with neither ``num_keypoints`` nor ``dims`` a value is flat frames ``[T, F]`` (a
    1-D value is one frame); with either, every frame is split into ``[K, D]`` keypoints.
    Normalisation runs per sequence in this order: ``relative_to``, ``center``, ``scale``;
    then the declared ``transforms`` run on the flat frames ``[T, K * D]`` (see
    :class:`mmcore.sequence.modality.SequenceOptions`). ``encoder="reference"`` is the
    reference design (1-D convolutions over time, then an LSTM).
    """

    num_keypoints: PositiveInt | None = Field(
        None, description="K: keypoints per frame; frames of K*D values are split into [K, D]"
    )
    dims: PositiveInt | None = Field(None, description="D: coordinates per keypoint (2 or 3)")
    steps: PositiveInt | None = Field(
        None, description="frames in a flat value: a flat list of N numbers (one cell, or a "
        "multi-column value) becomes [steps, N / steps] frames instead of one frame"
    )
    relative_to: NonNegativeInt | None = Field(
        None, description="subtract this keypoint from every keypoint of the same frame "
        "(e.g. 0 = the wrist in MediaPipe hands)"
    )
    center: Literal["mean"] | NonNegativeInt | None = Field(
        None, description="'mean': subtract the sequence's mean position (per channel for "
        "flat frames); an int k: subtract keypoint k's mean position over the sequence"
    )
    scale: Literal["max_abs", "std"] | None = Field(
        None, description="divide the sequence by its largest absolute value or its standard "
        "deviation (an all-zero sequence stays zero)"
    )
    max_length: PositiveInt | None = Field(None, description="most frames per sequence")
    truncate: bool = Field(
        False, description="keep the first max_length frames of longer sequences (else: error)"
    )
    REFERENCE_ONLY: ClassVar[frozenset[str]] = frozenset({"conv_channels", "kernel_size"})

    conv_channels: tuple[PositiveInt, ...] = Field(
        (64, 64), min_length=1, description="reference design: output channels of each 1-D "
        "convolution over time"
    )
    kernel_size: PositiveInt = Field(3, description="reference design: odd temporal kernel of "
                                     "every convolution")
    pool: Literal["mean", "last"] = Field(
        "mean", description="pooled output: masked mean of LSTM outputs, or the last state"
    )
    output: Literal["pooled", "sequence"] = "pooled"

    @field_validator("kernel_size")
    @classmethod
    def _odd_kernel(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"kernel_size must be odd so the output keeps T steps, got {value}")
        return value

    @model_validator(mode="after")
    def _keypoint_in_range(self) -> PositionOptions:
        k = self.num_keypoints
        for name in ("relative_to", "center"):
            index = getattr(self, name)
            if isinstance(index, int) and k is not None and index >= k:
                raise ValueError(f"{name}={index} is not a keypoint index below num_keypoints={k}")
        return self
