"""What every sequence modality shares: declared transforms, their fitted state, and the
choice of encoder. Its options are :class:`~mmcore.sequence.modality_options.SequenceOptions`
(imported here too); ``SequenceModality`` imports the encoder only when one is built."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

from mmcore.io import read_json_state, write_json_state
from mmcore.modality import Modality
from mmcore.sequence.modality_options import (
    NETWORK_OPTIONS,
    PRE_AUTO_ENCODER,
    SequenceOptions,
    auto_encoder,
    chosen_encoder,
)
from mmcore.sequence.options import Standardize, Transform
from mmcore.sequence.pipeline import SequencePipeline

if TYPE_CHECKING:
    from mmcore.batch import ModalityBatch
    from mmcore.encoder import Encoder
    from mmcore.sequence.minirocket import MiniRocketParameters


OptionsT = TypeVar("OptionsT", bound=SequenceOptions)

#: dropout on the standardised minirocket features when the ``dropout`` option is not given
MINIROCKET_DROPOUT = 0.0


class SequenceModality(Modality[OptionsT]):
    """Base of sequence modalities: reads ``[T, C]`` arrays (``read``), applies the declared
    transforms, and saves their fitted state next to the subclass's own.

    Subclasses implement :meth:`read` (a raw value -> checked float ``[T, C]``),
    :meth:`fit_rows` and :meth:`preprocess_row` (``fit`` and ``preprocess`` call them with an
    empty context), name their :attr:`state_file`, keep what they fit themselves in it with
    :meth:`own_state` / :meth:`load_own_state`, and may add implicit steps by overriding
    :meth:`steps` and shape their ``encoder: "reference"`` with :meth:`reference_design`.
    """

    #: the JSON state file in the modality's run folder, named after the plugin
    state_file: ClassVar[str] = "sequence.json"

    def __init__(self, name: str, options: OptionsT, root: Any = None, *,
                 columns: Sequence[str] = ()) -> None:
        super().__init__(name, options, root, columns=columns)
        o = self.options
        self.pipeline = SequencePipeline(self.steps(), o.rate, o.channel_names)
        self.minirocket: MiniRocketParameters | None = None
        self._encoder: str | None = o.encoder
        if o.encoder == "auto":  # minirocket gives no sequence: no choice left
            self._encoder = "tcn" if getattr(o, "output", "pooled") != "pooled" else None

    @property
    def encoder_kind(self) -> str:
        """The encoder this modality builds: the ``encoder`` option, or what ``"auto"``
        chose when the modality was fitted (``ValueError`` before that)."""
        return chosen_encoder(self._encoder, self.name)

    def steps(self) -> list[Transform]:
        """The steps applied, in order: the declared ``transforms``, then a per-channel
        standardisation fitted on the training split unless ``normalize="none"``."""
        extra = [Standardize()] if self.options.normalize == "standard" else []
        return [*self.options.transforms, *extra]

    # -- the state file -----------------------------------------------------------------
    def own_state(self) -> dict[str, Any]:
        """What the subclass fitted itself (e.g. the channel count), as JSON-ready entries of
        :attr:`state_file` beside ``"pipeline"``. Default: nothing."""
        return {}

    def load_own_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`own_state`'s entries from the whole state file's ``state``;
        ``ValueError`` when one is malformed. Default: nothing."""

    def save_state(self, directory: Path) -> None:
        """Write :attr:`state_file`: :meth:`own_state`, the transforms' fitted state
        (``"pipeline"``) and the encoder's (:meth:`encoder_state`)."""
        write_json_state(Path(directory) / self.state_file,
                         {**self._state(), **self.encoder_state()})

    def load_state(self, directory: Path) -> None:
        """Read what :meth:`save_state` wrote; ``ValueError`` naming the file when it is
        missing or malformed."""
        path = Path(directory) / self.state_file
        kind = Path(self.state_file).stem
        state = read_json_state(path, f"{kind} modality {self.name!r}")
        try:
            self.load_own_state(state)
            self.load_pipeline_state(state)
            self.load_encoder_state(state)
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}: invalid {kind} state: {exc}") from None

    def fingerprint(self) -> str:
        key = f"{super().fingerprint()}|{json.dumps(self._state(), sort_keys=True)}"
        sized = sorted(NETWORK_OPTIONS & self.options.model_fields_set)
        if self.options.encoder == "auto" and sized:  # "auto" chooses by them, even at defaults
            key += f"|sets {','.join(sized)}"
        return key

    def _state(self) -> dict[str, Any]:
        return {**self.own_state(), "pipeline": self.pipeline.state()}

    def load_pipeline_state(self, state: Mapping[str, Any]) -> None:
        """Restore the pipeline's fitted state from a state file.

        A run saved before ``normalize`` was an option of every sequence modality (a
        ``position`` run) has no implicit standardisation in its state: when the spec does
        not set ``normalize`` and the saved steps are exactly the declared ``transforms``,
        the run keeps its saved preprocessing (``normalize="none"``)."""
        pipeline = state.get("pipeline")
        if not isinstance(pipeline, dict):
            raise ValueError("no 'pipeline' entry (the transforms' fitted state)")
        try:
            self.pipeline.load_state(pipeline)
        except ValueError:
            saved = pipeline.get("transforms")
            if ("normalize" in self.options.model_fields_set
                    or not isinstance(saved, list) or len(saved) != len(self.options.transforms)):
                raise
            self.options = self.options.model_copy(update={"normalize": "none"})
            self.pipeline = SequencePipeline(self.steps(), self.options.rate,
                                             self.options.channel_names)
            self.pipeline.load_state(pipeline)

    def read(self, value: Any) -> np.ndarray:  # pragma: no cover - interface
        """One raw present value -> a checked ``[T, C]`` array, before the transforms."""
        raise NotImplementedError

    def context_columns(self) -> list[str]:
        """The columns named by ``standardize(by=...)`` steps."""
        return self.pipeline.context_columns

    def fit(self, values: Sequence[Any]) -> None:
        self.fit_rows(values, [{} for _ in values])

    def preprocess(self, value: Any) -> np.ndarray:
        return self.preprocess_row(value, {})

    def fit_transforms(
        self,
        values: Sequence[Any],
        read: Callable[[Any], np.ndarray],
        contexts: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Fit the pipeline on the training values (each read with ``read``) and their rows'
        context columns."""

        def arrays():
            for i, value in enumerate(values):
                try:
                    yield read(value)
                except ValueError as exc:
                    raise ValueError(f"training value {i} of {self.name!r}: {exc}") from None

        self.pipeline.fit(arrays, contexts)
        self.minirocket = None
        o = self.options
        self._encoder = o.encoder
        if o.encoder == "auto":
            self._encoder = auto_encoder(len(values), getattr(o, "output", "pooled") == "pooled",
                                         bool(NETWORK_OPTIONS & o.model_fields_set))
        unused = sorted(o.REFERENCE_ONLY & o.model_fields_set)
        if unused and self._encoder != "reference":
            from mmcore.log import get_logger

            chosen = " (chosen by 'auto')" if o.encoder == "auto" else ""
            get_logger().warning(
                f"warning: modality {self.name!r}: {', '.join(unused)} shape only encoder "
                f"'reference'; encoder {self._encoder!r}{chosen} ignores them (set encoder "
                "'reference' to use them, or leave them out)")
        if self._encoder == "minirocket":
            self.fit_minirocket(values, contexts)

    def adapts(self) -> bool:
        return self.pipeline.adapts

    def adapt(self, values: Sequence[Any], contexts: Sequence[Mapping[str, Any]]) -> None:
        """Statistics of new groups from their own rows (``standardize(new_groups="own")``);
        values that cannot be read are left out (preprocessing reports them)."""

        def arrays():
            for value, context in zip(values, contexts, strict=True):
                try:
                    arr = self.read(value)
                except ValueError:
                    continue
                yield arr.reshape(arr.shape[0], -1), context

        self.pipeline.adapt(arrays)

    def fit_minirocket(
        self, values: Sequence[Any], contexts: Sequence[Mapping[str, Any]] | None = None
    ) -> None:
        """Fit the ``minirocket`` encoder's dilations, biases and feature statistics on the
        preprocessed training values, at most ``FIT_ROWS`` of them (part of the fitted state,
        like the transforms')."""
        from mmcore.sequence.minirocket import FIT_ROWS, fit_minirocket

        rows = range(len(values)) if len(values) <= FIT_ROWS else sorted(
            np.random.RandomState(0).choice(len(values), FIT_ROWS, replace=False))
        arrays = []
        for i in rows:
            arr = self.preprocess_row(values[i], contexts[i] if contexts else {})
            arrays.append(arr.reshape(arr.shape[0], -1))
        o = self.options
        self.minirocket = fit_minirocket(arrays, o.minirocket_features, o.max_dilations)

    def encoder_state(self) -> dict[str, Any]:
        """What the encoder fitted on the training split, for the modality's state file:
        the encoder ``"auto"`` chose (``{"encoder": ...}``) and ``{"minirocket": ...}`` for
        that encoder."""
        state: dict[str, Any] = {}
        if self.options.encoder == "auto" and self._encoder is not None:
            state["encoder"] = self._encoder
        if self.minirocket is not None:
            state["minirocket"] = self.minirocket.state()
        return state

    def load_encoder_state(self, state: Mapping[str, Any]) -> None:
        """Read what :meth:`encoder_state` wrote; ``ValueError`` when it is missing or
        malformed. A run saved before ``"auto"`` existed has no choice saved: its spec named
        no encoder, so it used the default of then, ``tcn``."""
        if self.options.encoder == "auto":
            chosen = state.get("encoder", PRE_AUTO_ENCODER)
            if chosen not in ("tcn", "minirocket"):
                raise ValueError(f"encoder must be 'tcn' or 'minirocket', got {chosen!r}")
            self._encoder = chosen
        else:
            self._encoder = self.options.encoder
        if self._encoder != "minirocket":
            self.minirocket = None
            return
        from mmcore.sequence.minirocket import MiniRocketParameters

        if "minirocket" not in state:
            raise ValueError("no 'minirocket' entry (the minirocket encoder's fitted state)")
        self.minirocket = MiniRocketParameters.from_state(state["minirocket"])

    def transform(self, arr: np.ndarray, context: Mapping[str, Any] | None = None) -> np.ndarray:
        """The declared steps applied to one read ``[T, C]`` array (with its row's context).

        Raises ``RuntimeError`` when a fitted step is used before ``fit`` / ``load_state``: a
        pipeline mistake, not bad data."""
        if not self.pipeline.fitted:
            raise RuntimeError(
                f"modality {self.name!r} has fitted steps (a standardize transform, or the "
                "plugin's normalisation) but is not fitted: call fit() on the training values "
                "(or load_state) first"
            )
        out = self.pipeline(arr, context)
        if out.shape[0] == 0:
            raise ValueError("the transforms left no time step")
        return out

    def augment(self, batch: ModalityBatch, generator: Any) -> ModalityBatch:
        """The declared ``augment`` options applied to a training batch."""
        if not self.options.augment.active:
            return batch
        from mmcore.sequence.augment import augment_sequences

        return augment_sequences(batch, self.options.augment, generator)

    def halvings(self) -> int:
        """Strided blocks of the encoder, from ``downsample`` or the fitted median length."""
        from mmcore.sequence.encoder import auto_halvings

        d = self.options.downsample
        if d == "auto":
            return auto_halvings(self.pipeline.median_length)
        return int(d).bit_length() - 1

    def reference_design(self) -> dict[str, Any]:
        """How this plugin's ``encoder: "reference"`` differs from the shared one (no
        frontend, an LSTM of ``hidden_size``, one-way unless ``bidirectional``, no dropout
        unless ``dropout``, a linear layer to the output size), as
        :class:`~mmcore.sequence.encoder.SequenceEncoder` keyword arguments. Default: none."""
        return {}

    def sequence_encoder(self, input_size: int, output_size: int | None,
                         pool: str, output: str) -> Encoder:
        """The ``"tcn"``, ``"transformer"``, ``"minirocket"`` or ``"reference"`` encoder for
        ``input_size`` values per step."""
        o = self.options
        kind = self.encoder_kind
        if kind == "minirocket":
            return self._minirocket_encoder(input_size, output_size, output)
        from mmcore.sequence.encoder import REFERENCE_NAMES, SequenceEncoder

        shared: dict[str, Any] = {"hidden_size": o.hidden_size, "num_layers": o.num_layers,
                                  "output_size": output_size, "pool": pool, "output": output}
        if kind == "reference":
            return SequenceEncoder(input_size, **{
                **shared, "frontend": "none", "bidirectional": bool(o.bidirectional),
                "dropout": o.dropout or 0.0, "saved_names": REFERENCE_NAMES,
                **self.reference_design(),
            })
        return SequenceEncoder(
            input_size,
            **shared,
            frontend="tcn",
            channels=o.tcn_channels,
            halvings=self.halvings(),
            blocks=o.tcn_blocks if kind == "tcn" else 0,
            body="lstm" if kind == "tcn" else "transformer",
            bidirectional=True if o.bidirectional is None else o.bidirectional,
            heads=o.heads,
            dropout=0.1 if o.dropout is None else o.dropout,
        )

    def _minirocket_encoder(self, input_size: int, output_size: int | None,
                            output: str) -> Encoder:
        from mmcore.sequence.minirocket import MiniRocketEncoder

        if output != "pooled":
            raise ValueError(
                f"modality {self.name!r}: encoder 'minirocket' gives one feature vector per "
                "sequence; set output to 'pooled' (or choose encoder 'tcn' or 'transformer')"
            )
        if self.minirocket is None:
            raise ValueError(
                f"modality {self.name!r}: the minirocket encoder is not fitted; fit() the "
                "modality on training values (or load_state) first"
            )
        if self.minirocket.input_channels != input_size:
            raise ValueError(
                f"modality {self.name!r}: minirocket was fitted on "
                f"{self.minirocket.input_channels} values per step, the encoder gets {input_size}"
            )
        dropout = MINIROCKET_DROPOUT if self.options.dropout is None else self.options.dropout
        return MiniRocketEncoder(self.minirocket, output_size, dropout)
