"""Declared sequence transforms: the ``transforms`` option of every sequence modality.

Each step is a small pydantic model with an ``op`` name; a modality's ``transforms`` is an
ordered list of them, applied in that order to ``[T, C]`` arrays (time first). Steps that
need statistics (``standardize``) are fitted on the training split. This module imports no
torch and no numpy, so specs validate quickly.

A step may be written as a dict (``{"op": "resample", "steps": 100}``) or as the model.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    model_validator,
)


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Select(_Step):
    """Keep only some channels, in the order given (indices, or names from ``channel_names``)."""

    op: Literal["select"] = "select"
    channels: list[int | str] = Field(min_length=1, description="indices or channel names")


class Resample(_Step):
    """Change the number of time steps.

    Give exactly one of ``steps`` (a fixed length for every sequence), ``factor`` (output
    length = ``ceil(T / factor)``; 4 keeps every 4th step's worth) or ``rate`` (the target
    rate in Hz; needs the modality's ``rate``).

    Methods: ``"mean"`` averages the steps that fall in each output bin (a box filter, never
    aliasing worse than the bin), ``"decimate"`` is polyphase FIR resampling with an
    anti-aliasing low-pass (``scipy.signal.resample_poly``), ``"linear"`` interpolates
    linearly (also for upsampling).
    """

    op: Literal["resample"] = "resample"
    steps: PositiveInt | None = None
    factor: PositiveFloat | None = None
    rate: PositiveFloat | None = Field(None, description="target rate in Hz")
    method: Literal["mean", "decimate", "linear"] = "mean"

    @model_validator(mode="after")
    def _one_target(self) -> Resample:
        given = [n for n in ("steps", "factor", "rate") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                "resample: give exactly one of steps, factor or rate"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.method == "decimate" and self.steps is not None:
            raise ValueError("resample: method 'decimate' takes a factor or a rate, not steps")
        return self


class Envelope(_Step):
    """A windowed amplitude envelope per channel: root mean square or mean absolute value.

    ``window`` and ``hop`` are in steps, or ``window_ms``/``hop_ms`` in milliseconds (needs
    the modality's ``rate``). Output length: ``1 + (T - window) // hop`` (one window when a
    sequence is shorter than ``window``). ``hop`` defaults to ``window`` (no overlap).
    Subtract a channel's offset first (``demean=True``, the default) so a DC offset does not
    dominate the envelope, as raw EMG needs.
    """

    op: Literal["envelope"] = "envelope"
    kind: Literal["rms", "mav"] = "rms"
    window: int | None = Field(None, ge=2, description="window in steps (at least 2)")
    hop: PositiveInt | None = None
    window_ms: PositiveFloat | None = None
    hop_ms: PositiveFloat | None = None
    demean: bool = Field(True, description="subtract each sequence's per-channel mean first")

    @model_validator(mode="after")
    def _window_given(self) -> Envelope:
        if (self.window is None) == (self.window_ms is None):
            raise ValueError("envelope: give exactly one of window (steps) or window_ms")
        if self.hop is not None and self.hop_ms is not None:
            raise ValueError("envelope: give hop (steps) or hop_ms, not both")
        return self


class Standardize(_Step):
    """Per-channel standardisation.

    ``scope="dataset"``: statistics over every step of every training sequence, fitted once
    and saved with the run (``method="standard"``: mean and std; ``"robust"``: median and
    interquartile range). ``scope="sequence"``: each sequence by its own statistics (nothing
    fitted). A channel with no spread is only centred.

    ``by``: a data column (signer, session, device): statistics are fitted per value of that
    column on the training split, and a row is standardised with its group's numbers. A row
    without the column uses the statistics of the whole training split, and so does a group
    the training split does not have (a new signer) unless ``new_groups="own"``.

    ``new_groups="own"`` (transductive adaptation): a group the training split does not have
    is standardised with the statistics of its own rows among the rows preprocessed together
    (the validation or test split, the file given to ``mmcore evaluate``/``predict``, the
    rows of one ``predict``/serve call). Only inputs are read, never targets. Send a new
    group's rows together: statistics of a handful of rows are noisy.
    """

    op: Literal["standardize"] = "standardize"
    method: Literal["standard", "robust"] = "standard"
    scope: Literal["dataset", "sequence"] = "dataset"
    by: str | None = Field(None, description="a column: fit and apply per group")
    new_groups: Literal["training", "own"] = Field(
        "training", description="a group the training split lacks: 'training' uses the whole "
        "training split's statistics, 'own' the statistics of its own rows (transductive)"
    )

    @model_validator(mode="after")
    def _by_needs_dataset(self) -> Standardize:
        if self.by is not None and self.scope != "dataset":
            raise ValueError("standardize: 'by' applies to scope='dataset' only")
        if self.new_groups == "own" and self.by is None:
            raise ValueError("standardize: new_groups='own' needs 'by' (the group column)")
        return self


class Diff(_Step):
    """Differences over time (velocity, acceleration), appended as channels by default.

    ``order=1`` appends ``x[t] - x[t-1]``; ``order=2`` appends the first and the second
    differences. The first step's difference is 0, so the length is kept. With
    ``append=False`` the differences replace the channels.
    """

    op: Literal["diff"] = "diff"
    order: Literal[1, 2] = 1
    append: bool = True


class Clip(_Step):
    """Clip every value to ``[-limit, limit]`` (e.g. after standardising, against spikes)."""

    op: Literal["clip"] = "clip"
    limit: PositiveFloat = 5.0


OPS = ("select", "resample", "envelope", "standardize", "diff", "clip")


def _needs_op(value: object) -> object:
    if isinstance(value, dict) and "op" not in value:
        raise ValueError(f"each transform needs an 'op': one of {', '.join(OPS)}; got {value!r}")
    return value


Transform = Annotated[
    Select | Resample | Envelope | Standardize | Diff | Clip,
    Field(discriminator="op"),
    BeforeValidator(_needs_op),
]


def output_rates(transforms: list[Transform], rate: float | None) -> list[float | None]:
    """The rate (Hz) of the input of each step, then of the output: ``len(transforms) + 1``
    values, ``None`` where unknown (no ``rate`` declared, or after ``resample(steps=...)``,
    which gives every sequence the same length whatever its duration).

    Raises ``ValueError`` naming the step when a step needs a rate that is unknown there.
    """
    rates: list[float | None] = [rate]
    for i, step in enumerate(transforms):
        current = rates[-1]
        needs = []
        if isinstance(step, Resample) and step.rate is not None:
            needs.append("rate")
        if isinstance(step, Envelope):
            needs += [n for n in ("window_ms", "hop_ms") if getattr(step, n) is not None]
        if needs and current is None:
            raise ValueError(
                f"transforms[{i}] ({step.op}) gives {', '.join(needs)} in Hz/ms, but the rate is "
                "unknown there: set the modality's rate option (Hz of the data as recorded)"
                + (" and do not resample to a fixed number of steps before it" if i else "")
            )
        if isinstance(step, Resample):
            if step.rate is not None:
                current = step.rate
            elif step.factor is not None and current is not None:
                current = current / step.factor
            elif step.steps is not None:
                current = None
        elif isinstance(step, Envelope) and current is not None:
            window, hop = envelope_window(step, current)
            if window < 2:
                raise ValueError(
                    f"transforms[{i}] (envelope): window_ms={step.window_ms} is "
                    f"{step.window_ms * current / 1000:g} steps at {current:g} Hz; a window "
                    "needs at least 2 steps"
                )
            current = current / hop
        rates.append(current)
    return rates


def envelope_window(step: Envelope, rate: float | None) -> tuple[int, int]:
    """``(window, hop)`` of an envelope step in steps, converting milliseconds at ``rate``."""
    def steps(ms: float) -> int:  # milliseconds -> the nearest whole number of steps
        if rate is None:
            raise ValueError("envelope: window_ms/hop_ms need the modality's rate")
        return max(1, round(ms * rate / 1000))

    window = step.window if step.window is not None else steps(step.window_ms or 0.0)
    if step.hop is not None:
        hop = step.hop
    elif step.hop_ms is not None:
        hop = steps(step.hop_ms)
    else:
        hop = window
    return window, hop


class Augment(_Step):
    """Training-time augmentation of a sequence modality's batches (off unless declared).

    Applied to training batches only, after the cache (preprocessing stays deterministic),
    with draws seeded by ``(train.seed, epoch)`` so a resumed run sees the same ones. Values
    are in the units of the preprocessed sequence (standardised units when it is
    standardised). Each is off at 0.
    """

    jitter: float = Field(0.0, ge=0.0, description="std of Gaussian noise added to every value")
    scale: float = Field(0.0, ge=0.0, description="std of log-normal gains, one per sample "
                         "and channel (0.1: about ±10%)")
    shift: float = Field(0.0, ge=0.0, lt=1.0, description="most circular time shift, as a "
                         "fraction of each sequence's length")
    time_mask: float = Field(0.0, ge=0.0, lt=1.0, description="longest span of steps set to "
                             "zero, as a fraction of each sequence's length (one span)")
    channel_mask: float = Field(0.0, ge=0.0, lt=1.0, description="probability that a channel "
                                "of a sample is set to zero")

    @property
    def active(self) -> bool:
        return any((self.jitter, self.scale, self.shift, self.time_mask, self.channel_mask))
