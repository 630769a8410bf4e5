"""Where one split's rows are kept and how they become batches: one interface, two stores.

A :class:`PreparedSplit` is a split preprocessed up front into a cached Arrow table
(:mod:`mmcore.data.split_preprocess`), its batches drawn by a seeded, sharded sampler and read
from the table or from memory (:mod:`mmcore.data.split_loader`). A :class:`StreamedSplit` is
read from its stream and preprocessed as its batches are drawn (``data.streaming=True``,
:mod:`mmcore.data.streaming`). :class:`~mmcore.data.module.DataModule` keeps one store per
split, made with what that store needs, and asks the store; it never asks how a split is kept.

The loaders are imported when a store first makes one, so making a store imports neither
torch nor ``datasets`` (a warm set-up imports no ``datasets``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from mmcore.data import sources as src
from mmcore.data.loader_plan import LoaderPlan
from mmcore.data.storage import decode_arrays
from mmcore.errors import DataError

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

    from mmcore.data.bad_rows import BadRow
    from mmcore.data.loader import ArrowSplit
    from mmcore.data.memory import MemorySplit
    from mmcore.data.preprocess import RowProcessor
    from mmcore.data.split_sources import SplitSource
    from mmcore.modality import Modality


class SplitStore(Protocol):
    """One split's rows, served as batches of :class:`~mmcore.batch.Batch`."""

    def num_rows(self) -> int:
        """Rows that batches are made of."""
        ...

    def table(self) -> ArrowSplit:
        """The split's preprocessed table; a :class:`DataError` for a split that has none."""
        ...

    def class_codes(self, key: str) -> np.ndarray:
        """``[num_rows()]`` int64: each row's encoded class, stored under ``key``
        (:func:`~mmcore.data.storage.target_key` of a classification head), in split order."""
        ...

    def loader(self, plan: LoaderPlan, balance_by: np.ndarray | None = None) -> DataLoader:
        """The split's batches as ``plan`` orders them (see
        :meth:`mmcore.data.module.DataModule.loader`); ``balance_by``: each row's class, to
        draw rows class-balanced (``None``: don't)."""
        ...


class PreparedSplit:
    """A split preprocessed into a cached Arrow table, bad rows left out.

    Args:
        table: the split's rows.
        modalities: name -> fitted modality; they collate the batches.
        heads: the spec's head names; a batch carries the targets of those the table holds.
        in_memory: ``data.in_memory`` (``True``, ``False`` or ``"auto"``): whether a loader
            holds the split in memory (:func:`~mmcore.data.split_loader.held_in_memory`).
    """

    def __init__(
        self,
        table: ArrowSplit,
        modalities: Mapping[str, Modality],
        heads: Sequence[str],
        in_memory: bool | str,
    ) -> None:
        self._table = table
        self.modalities = modalities
        self.heads = list(heads)
        self.in_memory = in_memory
        self.memory: MemorySplit | None = None  # built by the first loader that holds it
        self._class_codes: dict[str, np.ndarray] = {}

    def num_rows(self) -> int:
        return len(self._table)

    def table(self) -> ArrowSplit:
        return self._table

    def class_codes(self, key: str) -> np.ndarray:
        if key not in self._class_codes:  # read once, not every epoch
            arrow = self._table.columns([key, f"{key}.shape", f"{key}.dtype"])
            self._class_codes[key] = np.array(decode_arrays(arrow, key), dtype=np.int64)
        return self._class_codes[key]

    def loader(self, plan: LoaderPlan, balance_by: np.ndarray | None = None) -> DataLoader:
        from mmcore.data.split_loader import held_in_memory, split_loader

        if self.memory is None:  # kept once built, for the next epoch's loader
            self.memory = held_in_memory(self._table, self.in_memory, self.modalities,
                                         self.heads)
        return split_loader(self._table, self.memory, self.modalities, self.heads, plan,
                            balance_by)


class StreamedSplit:
    """A split read from its stream and preprocessed as its batches are drawn.

    Args:
        name: the split's name, for messages.
        source: the split's rows (a ``datasets.IterableDataset``) and the folder relative
            paths in them resolve against.
        processor: the split's :class:`RowProcessor` encoding the targets of the heads whose
            target column is among the given columns. A function, called when batches are
            asked for: a stream without declared features tells its columns only by reading
            its first row.
        report: takes each bad row skipped in this process (``DataModule.bad_rows.append``).
    """

    def __init__(
        self,
        name: str,
        source: SplitSource,
        processor: Callable[[set[str]], RowProcessor],
        report: Callable[[BadRow], None],
    ) -> None:
        self.name = name
        self.source = source
        self.processor = processor
        self.report = report
        self._num_rows: int | None = None

    def num_rows(self) -> int:
        """The rows of the stream counted once without preprocessing, so skipped bad rows
        are included."""
        from mmcore.data.streaming import count_rows

        if self._num_rows is None:
            self._num_rows = count_rows(self.source.dataset)
        return self._num_rows

    def table(self) -> ArrowSplit:
        raise self._no_table()

    def class_codes(self, key: str) -> np.ndarray:
        raise self._no_table()  # they would be read from the table

    def _no_table(self) -> DataError:
        return DataError(f"split {self.name!r} is streamed (data.streaming=True): no table")

    def loader(self, plan: LoaderPlan, balance_by: np.ndarray | None = None) -> DataLoader:
        """``balance_by`` is always ``None`` here: :meth:`class_codes` has none to give."""
        from mmcore.data.streaming import stream_loader

        source = self.source
        processor = self.processor(set(src.column_names(source.dataset)))
        # SkipBatches (resuming mid-epoch with several workers) iterates as its DataLoader does
        return stream_loader(  # type: ignore[return-value]
            source.dataset, source.root, processor, self.report, plan)
