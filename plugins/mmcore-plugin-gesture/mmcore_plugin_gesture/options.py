"""Options of the ``gesture`` modality (pydantic only: validating a spec imports no torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from mmcore.sequence.modality_options import SequenceOptions


class GestureOptions(SequenceOptions):
    """How ``gesture`` reads, normalises and encodes motion sequences ``[T, C]``.

    A 2-D value is ``[T, C]``. A flat (1-D) value of ``N`` numbers — a list in one cell or a
    multi-column value — becomes ``[N / channels, channels]`` or ``[steps, N / steps]``; with
    neither option it is one channel, ``[N, 1]``.

    Then the declared ``transforms`` run in order (see :class:`mmcore.sequence.modality.
    SequenceOptions`), and last ``normalize``. ``encoder="reference"`` is the reference design
    (an LSTM over time, then a linear layer).
    """

    channels: PositiveInt | None = Field(
        None, description="C: values per time step; checked on every sequence, and flat "
        "values are split into [N / C, C]"
    )
    steps: PositiveInt | None = Field(
        None, description="time steps per sequence: flat values are split into [steps, N / "
        "steps], and 2-D values must have exactly this many steps"
    )
    max_length: PositiveInt | None = Field(None, description="most time steps per sequence")
    truncate: bool = Field(
        False, description="keep the first max_length steps of longer sequences (else: error)"
    )
    output_size: PositiveInt = Field(64, description="size of the linear layer's output")
    pool: Literal["mean", "last"] | None = Field(
        None, description="pooled output: the masked mean over steps, or the LSTM state at "
        "the last real step (recurrent encoders only); default 'last' for the reference "
        "design, 'mean' otherwise"
    )
    output: Literal["pooled", "sequence"] = "pooled"
