"""What a spec sets for a sequence modality (:class:`SequenceOptions`: the transforms, the
normalisation and the encoder), and the rule ``encoder: "auto"`` chooses by. Imports no
torch, so validating a spec stays light."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from mmcore.modality import ModalityOptions
from mmcore.sequence.options import Augment, Transform
from mmcore.sequence.pipeline import SequencePipeline


class SequenceOptions(ModalityOptions):
    """Options every sequence modality has: ``rate``, ``channel_names``, ``transforms`` and
    the encoder choice. ``encoder="reference"`` is the plugin's reference design; ``"tcn"``
    and ``"transformer"`` are :class:`mmcore.sequence.encoder.SequenceEncoder`."""

    #: options only the plugin's ``encoder="reference"`` reads: set with another encoder (or
    #: one ``"auto"`` chose), they do nothing, and fitting the modality says so
    REFERENCE_ONLY: ClassVar[frozenset[str]] = frozenset()

    rate: PositiveFloat | None = Field(
        None, description="sampling rate of the data as recorded, in Hz (for transforms given "
        "in Hz or milliseconds)"
    )
    channel_names: list[str] | None = Field(
        None, description="names of the channels as read, for select steps by name"
    )
    transforms: list[Transform] = Field(
        default_factory=list, description="preprocessing steps applied in order to every "
        "[T, C] sequence (resample, envelope, standardize, select, diff, clip); fitted steps "
        "are fitted on the training split and saved with the run"
    )
    normalize: Literal["standard", "none"] = Field(
        "standard", description="'standard': per-channel (x - mean) / std with mean and std "
        "fitted on the training split, after the transforms; 'none': values as transformed"
    )
    encoder: Literal["auto", "reference", "tcn", "transformer", "minirocket"] = Field(
        "auto", description="'auto': 'minirocket' when the training split has at most 2,000 "
        "rows, the output is pooled and no tcn/transformer option is set, else 'tcn' (chosen "
        "when the modality is fitted, saved with the run); 'tcn': residual temporal "
        "convolutions (strided to shorten long inputs) then a bidirectional LSTM; "
        "'transformer': strided convolutions then a transformer encoder; 'minirocket': fixed "
        "dilated convolutions with biases fitted on the training split, PPV features, then a "
        "learned linear layer; 'reference': the plugin's reference design"
    )
    minirocket_features: int = Field(
        10_000, ge=84, description="minirocket: number of features (rounded down to a "
        "multiple of 84)"
    )
    max_dilations: PositiveInt = Field(32, description="minirocket: most dilations per kernel")
    hidden_size: PositiveInt = Field(64, description="recurrent / transformer width")
    num_layers: PositiveInt = Field(1, description="recurrent or transformer layers")
    bidirectional: bool | None = Field(
        None, description="bidirectional recurrent layers (default: yes for 'tcn', no for "
        "'reference')"
    )
    dropout: float | None = Field(
        None, ge=0.0, lt=1.0, description="dropout (default: 0.1 for 'tcn'/'transformer', 0 "
        "for 'reference')"
    )
    tcn_channels: PositiveInt = Field(64, description="width of the temporal convolutions")
    tcn_blocks: NonNegativeInt = Field(2, description="dilated residual blocks after the "
                                       "strided ones")
    downsample: Literal["auto"] | PositiveInt = Field(
        "auto", description="how much the strided blocks shorten a sequence, a power of 2; "
        "'auto': until the median training length is at most 64 steps"
    )
    heads: PositiveInt = Field(4, description="attention heads of the transformer")
    augment: Augment = Field(
        default_factory=Augment, description="training-time augmentation (jitter, scale, "
        "shift, time_mask, channel_mask); off by default"
    )

    @model_validator(mode="after")
    def _minirocket_is_pooled(self) -> SequenceOptions:
        if self.encoder == "minirocket" and getattr(self, "output", "pooled") != "pooled":
            raise ValueError(
                "encoder 'minirocket' gives one feature vector per sequence: set output to "
                "'pooled' (or choose encoder 'tcn' or 'transformer' for a sequence output)"
            )
        return self

    @model_validator(mode="after")
    def _transforms_work(self) -> SequenceOptions:
        if not isinstance(self.downsample, str) and self.downsample & (self.downsample - 1):
            raise ValueError(f"downsample must be a power of 2 or 'auto', got {self.downsample}")
        SequencePipeline.check(self.transforms, self.rate, self.channel_names)
        return self



#: ``encoder: "auto"`` picks ``minirocket`` up to this many training rows (docs/sequences.md)
AUTO_MINIROCKET_ROWS = 2_000
#: what a run saved before ``encoder: "auto"`` existed used when its spec named no encoder
PRE_AUTO_ENCODER = "tcn"


#: options only the trained encoders use: a spec that sets one gets ``tcn`` from ``"auto"``
NETWORK_OPTIONS = frozenset({"tcn_channels", "tcn_blocks", "downsample", "heads", "num_layers",
                             "bidirectional"})


def chosen_encoder(kind: str | None, modality: str) -> str:
    """``kind``, the encoder a modality builds; ``ValueError`` while ``encoder: "auto"`` has
    not chosen yet (before the modality is fitted or its state loaded)."""
    if kind is None:
        raise ValueError(
            f"modality {modality!r}: encoder 'auto' is chosen from the training split; "
            "fit() the modality (or load_state) first, or name the encoder"
        )
    return kind


def auto_encoder(rows: int, pooled: bool, network_options: bool = False) -> str:
    """The encoder ``encoder: "auto"`` picks for a training split of ``rows`` rows:
    ``minirocket`` for small data with a pooled output, unless the spec sets options only a
    trained network uses (``network_options``); ``tcn`` otherwise."""
    small = rows <= AUTO_MINIROCKET_ROWS
    return "minirocket" if pooled and small and not network_options else "tcn"
