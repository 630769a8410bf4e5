"""The ``Modality`` interface: what a plugin provides for one kind of data.

A modality turns raw column values into arrays (``preprocess``), arrays into a padded
:class:`~mmcore.batch.ModalityBatch` (``collate``) and builds the matching
:class:`~mmcore.encoder.Encoder` (``build_encoder``). Its options are a pydantic model that
lives in a module of its own (imports no torch), so specs validate quickly.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:  # only annotations: importing this module (and options models) stays torch-free
    from mmcore.batch import ModalityBatch
    from mmcore.encoder import Encoder


class ModalityOptions(BaseModel):
    """Base for a modality's options: unknown keys are rejected, values are validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


OptionsT = TypeVar("OptionsT", bound=ModalityOptions)


class Modality(Generic[OptionsT]):
    """One declared modality of a spec, with its options.

    Subclasses implement ``preprocess``, ``collate`` and ``build_encoder``; those with fitted
    state (a tokenizer) also implement ``fit``, ``save_state`` and ``load_state``.

    The options model is declared once, in the plugin's registration
    (``register(name, impl, options="pkg.options:Model")``), where ``mmcore validate`` finds it
    without importing the implementation; the class does not name it again. mmcore validates
    a spec's options with it and passes the validated object here.

    Args:
        name: the modality's name in the spec (e.g. ``"audio"``).
        options: the validated options, an instance of the registered options model (by hand:
            ``TextModality("text", TextOptions(max_length=64))``).
        root: folder that relative file paths in the data resolve against.
        columns: the spec's column(s) for this modality, in order (keyword only): a
            multi-column value is a list of cells in this order. A subclass that defines
            ``__init__`` takes ``*, columns=()`` and passes it on; one written before mmcore
            passed columns (``__init__(name, options, root=None)``) still loads, and is given
            them by :func:`new_modality`.
    """

    #: whether a cell value may name a file that :meth:`preprocess` reads (through
    #: :mod:`mmcore.io`, which keeps it inside ``mmcore serve --root``). ``mmcore serve``
    #: requires ``--root`` (or ``--no-files``) for a model with such a modality; a modality
    #: that never reads files (text, table cells) sets it to ``False``.
    reads_files: bool = True

    def __init__(self, name: str, options: OptionsT, root: Path | None = None, *,
                 columns: Sequence[str] = ()):
        if options is None:  # the class no longer knows its options model to default to
            raise TypeError(
                f"{type(self).__name__}({name!r}): give the options, an instance of the "
                "options model the plugin registers (its defaults: Model())"
            )
        self.name = name
        self.options: OptionsT = options
        self.root = Path(root) if root is not None else None
        #: the spec's column(s) for this modality, in order (empty when built by hand without
        #: them): a multi-column value is a list of cells in this order
        self.columns: list[str] = list(columns)

    # -- other columns of the row ---------------------------------------------------------
    def context_columns(self) -> list[str]:
        """Columns of the row, besides the modality's own, that its preprocessing reads (e.g.
        a signer column for per-group standardisation). Default: none.

        When this is not empty the data layer calls :meth:`fit_rows` and
        :meth:`preprocess_row` instead of :meth:`fit` and :meth:`preprocess`, giving each row's
        values of these columns (``None`` where a row lacks one, e.g. at prediction).
        """
        return []

    def fit_rows(self, values: Sequence[Any], contexts: Sequence[Mapping[str, Any]]) -> None:
        """:meth:`fit` with each value's context (same order); default: ignores the context."""
        self.fit(values)

    def preprocess_row(self, value: Any, context: Mapping[str, Any]) -> np.ndarray:
        """:meth:`preprocess` with the row's context; default: ignores the context."""
        return self.preprocess(value)

    # -- transductive adaptation ------------------------------------------------------------
    def adapts(self) -> bool:
        """Whether :meth:`adapt` reads the rows about to be preprocessed. Default: no."""
        return False

    def adapt(self, values: Sequence[Any], contexts: Sequence[Mapping[str, Any]]) -> None:
        """State from the unlabelled rows about to be preprocessed together (a validation or
        test split, a file to evaluate, the rows of one predict call), e.g. statistics of a
        signer the training split lacks. Called only when :meth:`adapts`, after ``fit`` /
        ``load_state``, with the present values and their :meth:`context_columns`; values
        ``preprocess`` would reject may be among them (skip them). Each call replaces what
        the previous one adapted; nothing of it is saved with the run. Default: nothing."""

    # -- fitted state -------------------------------------------------------------------
    def fit(self, values: Sequence[Any]) -> None:
        """Fit preprocessing state on the training split's raw values (present ones only).

        ``values`` may hold values that :meth:`preprocess` will reject (bad rows are found
        after the fit): skip them. Raise :class:`~mmcore.errors.DataError` only when no fit is
        possible at all."""

    def check(self) -> None:
        """What can be checked before any data is read or anything is loaded: e.g. that a
        folder or file an option names exists. ``mmcore validate`` calls it with :attr:`root`
        set as for :meth:`fit` (the train split's data root); raise
        :class:`~mmcore.errors.DataError` naming the option. Default: nothing to check."""

    def save_state(self, directory: Path) -> None:
        """Write fitted state (e.g. ``tokenizer.json``) into ``directory``."""

    def load_state(self, directory: Path) -> None:
        """Read what :meth:`save_state` wrote."""

    def fingerprint(self) -> str:
        """A string that changes whenever preprocessing output would change (cache key).

        Defaults to the options as JSON; modalities with fitted state add to it.
        """
        return self.options.model_dump_json()

    # -- data -----------------------------------------------------------------------------
    def is_missing(self, value: Any) -> bool:
        """Whether a raw value means "this sample has no such modality" (null, NaN, empty)."""
        if value is None:
            return True
        if isinstance(value, float) and math.isnan(value):
            return True
        if isinstance(value, str | bytes | list | tuple | dict) and len(value) == 0:
            return True
        return False

    def preprocess(self, value: Any) -> np.ndarray:  # pragma: no cover - interface
        """One raw, present value -> an array (float32 or int64, any shape).

        Must be deterministic. Raise ``ValueError`` with a readable reason for bad input
        (corrupt file, wrong shape, NaN); the data layer adds the split, row and column.
        """
        raise NotImplementedError

    def collate(self, items: Sequence[np.ndarray | None]) -> ModalityBatch:  # pragma: no cover
        """Preprocessed arrays (``None`` where missing) -> one padded, masked batch."""
        raise NotImplementedError

    def collate_stacked(self, values: np.ndarray) -> ModalityBatch:
        """``B`` present samples of one shape and dtype stacked as ``values [B, ...]`` -> the
        batch :meth:`collate` gives for them.

        The data layer calls this for splits held in memory (``data.in_memory``). The default
        is ``self.collate(list(values))``; override it to build the batch in one call (see
        :func:`mmcore.collate.stacked_sequences`), keeping it equal to :meth:`collate`'s.
        """
        return self.collate(list(values))

    def augment(self, batch: ModalityBatch, generator: Any) -> ModalityBatch:
        """A training batch, randomly augmented (default: unchanged).

        Called by the trainer on training batches only, after collation and before the
        batch moves to the device. Draw every random number from ``generator`` (a CPU
        ``torch.Generator`` seeded by ``(train.seed, epoch)``), so resumed runs repeat the
        draws. Keep padded steps and absent rows zero.
        """
        return batch

    def build_encoder(self) -> Encoder:  # pragma: no cover - interface
        """A fresh encoder for this modality and options."""
        raise NotImplementedError

    def with_root(self, root: str | Path | None) -> Modality[OptionsT]:
        """This modality (fitted state shared, not copied) resolving relative file paths
        against ``root``: itself when that is its root already, else a shallow copy."""
        root = Path(root) if root is not None else None
        if self.root == root:
            return self
        clone = copy.copy(self)
        clone.root = root
        return clone

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, options={self.options!r})"


ModalityT = TypeVar("ModalityT", bound=Modality)


def new_modality(
    cls: type[ModalityT], name: str, options: Any, *, root: str | Path | None = None,
    columns: Sequence[str] = (),
) -> ModalityT:
    """``cls(name, options, root=root, columns=columns)``: how mmcore builds every modality
    (from a spec, a run folder or a bundle).

    A plugin class whose ``__init__`` takes neither ``columns`` nor ``**kwargs`` (the
    signature ``__init__(name, options, root=None)`` plugins were written with before mmcore
    passed columns) is built without them and given them here, the one place they are set
    after construction, so such a plugin keeps working unchanged."""
    folder = Path(root) if root is not None else None
    if _takes_columns(cls):
        return cls(name, options, root=folder, columns=list(columns))
    modality = cls(name, options, root=folder)
    modality.columns = list(columns)
    return modality


def _takes_columns(cls: type) -> bool:
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):  # no signature to read: build it the old way
        return False
    return any(p.name == "columns" and p.kind is not p.POSITIONAL_ONLY
               or p.kind is p.VAR_KEYWORD for p in parameters)


@contextlib.contextmanager
def rooted(modalities: Mapping[str, Modality], root: str | Path | None) -> Iterator[None]:
    """The modalities resolve relative file paths against ``root`` for the duration (left as
    they are when ``root`` is ``None``); their own roots come back afterwards."""
    saved = {name: m.root for name, m in modalities.items()}
    try:
        if root is not None:
            for m in modalities.values():
                m.root = Path(root)
        yield
    finally:
        for name, m in modalities.items():
            m.root = saved[name]
