"""``DataModule``: a spec's data from source files to collated batches.

Its steps live beside it, each handed what it needs: :mod:`mmcore.data.split_sources` (the
sources as splits, their columns checked), :mod:`mmcore.data.train_fit` (modalities and heads
fitted on the train split), :mod:`mmcore.data.split_preprocess` (each split preprocessed into
a cached table, bad rows left out), :mod:`mmcore.data.split_store` (each split kept as a
prepared table or a stream, and its batches); :mod:`mmcore.data.targets` is the heads' side."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmcore.data import fit_cache
from mmcore.data import sources as src
from mmcore.data.bad_rows import BadRow, summary, write_bad_rows
from mmcore.data.preprocess import RowProcessor, TargetSpec
from mmcore.data.split_preprocess import (
    plugin_versions,
    preprocessed_root,
    preprocessed_split,
    refuse_adapting,
)
from mmcore.data.split_record import Made, fit_keys, recall, record, record_key
from mmcore.data.split_sources import (
    SplitSource,
    check_columns,
    check_modalities,
    file_split,
    load_splits,
    required_columns,
    split_sizes,
)
from mmcore.data.split_store import LoaderPlan, PreparedSplit, SplitStore, StreamedSplit
from mmcore.data.storage import ROW, target_key
from mmcore.data.targets import Targets
from mmcore.data.train_fit import TrainFit
from mmcore.errors import DataError
from mmcore.modality import Modality
from mmcore.plugins.default import get_registry
from mmcore.plugins.registry import Registry
from mmcore.rows import collate_rows
from mmcore.spec.model import Spec

if TYPE_CHECKING:  # imported where used: checking a spec's data imports neither
    from torch.utils.data import DataLoader

    from mmcore.batch import Batch
    from mmcore.data.loader import ArrowSplit


class DataModule:
    """Reads the spec's data, fits modalities and target encodings on the train split,
    preprocesses every split once (cached by ``datasets``' fingerprint) and serves batches.

    Args:
        spec: the validated spec.
        modalities: name -> modality (from :func:`mmcore.model.build_modalities`); fitted
            here by :meth:`setup` (``fit=True``) or already loaded with their state.
        registry: where head kinds are looked up (default: the process-wide registry).
        output_dir: a run folder; when given, :meth:`setup` writes skipped rows to
            ``output_dir/bad_rows.json``.
        progress: show progress bars while reading and preprocessing.
        announce: print the summary of skipped rows to stderr (off on the extra ranks of a
            distributed run, so it appears once).

    Attributes:
        head_options: head name -> options including fitted state (e.g. ``classes``).
        splits: the splits that exist, in the order train, validation, test, others.
        bad_rows: rows left out (``data.bad_rows="skip"``), in split and row order.
        split_warnings: why a split is empty or missing although the data or the spec asks
            for it (an empty split file; a seeded or group split that could not give
            validation/test rows), set by :meth:`setup` and :meth:`check`.
        fitted_states: modality name -> its fit in the fit cache
            (:class:`mmcore.data.fit_cache.CachedFit`), set by :meth:`setup` for the
            modalities whose fit was loaded from the cache or stored there: a new run folder
            copies those files rather than saving the state again.
    """

    def __init__(
        self,
        spec: Spec,
        modalities: Mapping[str, Modality],
        registry: Registry | None = None,
        output_dir: Path | None = None,
        progress: bool = True,
        announce: bool = True,
    ) -> None:
        self.spec = spec
        # False on the extra ranks of a distributed run: rank 0 alone reports skipped rows
        self.announce = announce
        self.modalities = dict(modalities)
        self.registry = registry or get_registry()
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.progress = progress
        self.head_options: dict[str, dict[str, Any]] = {
            name: dict(head.options) for name, head in spec.heads.items()
        }
        self.splits: list[str] = []
        self.bad_rows: list[BadRow] = []
        self.split_warnings: list[str] = []
        self.fitted_states: dict[str, fit_cache.CachedFit] = {}
        self.columns = {name: spec.modalities[name].columns for name in self.modalities}
        # fitting and checking targets imports no built-in head (torch)
        self._head_targets = Targets(spec, self.registry)
        self._stores: dict[str, SplitStore] = {}  # split name -> where its rows are kept
        # the last fit on the train split: the rows it rejected, and the heads' raw targets
        # to fit again on the rows that survive preprocessing (_refit_heads)
        self._train_fit = self._new_train_fit()

    # -- setup --------------------------------------------------------------------------
    @property
    def streaming(self) -> bool:
        return bool(self.spec.data.streaming)

    def setup(self, fit: bool = True) -> None:
        """Load the sources into splits, check every column the spec names (before any other
        work), fit the modalities and target encodings on the train split (``fit=True``; with
        ``fit=False`` the modalities are taken as loaded and ``head_options`` are the spec's),
        then preprocess every split (not in streaming mode, where it happens lazily). What an
        earlier set-up of the same spec and files made is memory-mapped instead, when it was
        recorded (:mod:`mmcore.data.split_record`): no row is read again."""
        self.bad_rows = []
        self._stores = {}
        self._train_fit = self._new_train_fit()
        if self.spec.train.sampler == "balanced":
            self._head_targets.balanced_by()
        key = record_key(self.spec, self.modalities, self.registry, self._head_targets) \
            if fit else None
        made = recall(self.spec, key, self.modalities) if key else None
        if made is None:
            with src.progress_bars(self.progress):
                made = self._set_up(fit, recorded=key is not None)
            self.fitted_states = dict(self._train_fit.cached)
            if made is None:  # streamed: prepared as it is read
                return
            if key:
                record(self.spec, key, made)
        else:
            self.fitted_states = dict(made.cached)
        self.head_options = made.head_options
        self.bad_rows, self.split_warnings = made.bad_rows, made.warnings
        self._stores = {name: self._prepared(table) for name, table in made.tables.items()}
        self.splits = list(made.tables)
        self._report()

    def _set_up(self, fit: bool, recorded: bool) -> Made | None:
        """:meth:`setup` in full: what it made (``None`` when streamed), with the fit cache's
        keys of the modalities' fits when it is ``recorded``."""
        splits = self._load_splits()
        fits = None
        if fit:
            versions = plugin_versions(self.spec, self.registry, self.modalities)
            cache_root = None if self.streaming else preprocessed_root(self.spec)
            if recorded:  # taken before the fit, which changes the modalities' fingerprints
                fits = fit_keys(splits, self.modalities, self.columns, versions)
            self.head_options = self._train_fit.fit(splits, versions, cache_root)
        else:
            self.head_options = {n: dict(h.options) for n, h in self.spec.heads.items()}
        self.splits = list(splits)
        if self.streaming:
            refuse_adapting(self.modalities)
            self._stores = {name: self._streamed(name, split) for name, split in splits.items()}
            return None
        tables = {}
        for name, split in splits.items():
            tables[name] = self._preprocess(name, split, self._targets())
            if name == "train" and fit:
                self._refit_heads(tables[name])
        return Made(self.head_options, tables, self.bad_rows, self.split_warnings, fits)

    def check(self) -> dict[str, int | None]:
        """What :meth:`setup` checks before any work, and nothing more (``mmcore validate``):
        the sampler, that every source exists and reads as a table, and that every column the
        spec names is in it, then the split assignment and the heads' options against the
        train split's targets (:meth:`.TrainFit.fit_heads`). No modality is fitted, nothing
        is preprocessed or kept.

        Returns the rows of each split, before bad rows are left out (``None`` for a streamed
        split, not counted); :attr:`split_warnings` says why a split is empty or missing."""
        if self.spec.train.sampler == "balanced":
            self._head_targets.balanced_by()
        with src.progress_bars(self.progress):
            splits = self._load_splits(schema_only=True)
            train = splits.get("train")
            # rooted as for fitting
            check_modalities(self.modalities, train.root if train is not None else None)
            if train is not None:  # the heads' options against the classes in the data
                self._new_train_fit().fit_heads(train)
        return split_sizes(splits)

    def _targets(self, present: set[str] | None = None) -> list[TargetSpec]:
        return self._head_targets.specs(self.head_options, present)

    def _load_splits(self, schema_only: bool = False) -> dict[str, SplitSource]:
        """The splits (:func:`mmcore.data.split_sources.load_splits`); sets
        :attr:`split_warnings`."""
        self.split_warnings = []
        name = self._head_targets.categorical()
        stratify_by = None if name is None else self.spec.heads[name].target
        needed = required_columns(self.modalities, self.columns, self.spec.heads)
        splits, self.split_warnings = load_splits(self.spec, needed, stratify_by, schema_only)
        return splits

    def _new_train_fit(self) -> TrainFit:
        return TrainFit(self.spec, self.modalities, self.columns, self._head_targets)

    def class_codes(self, split: str) -> np.ndarray:
        """``[num_rows(split)]`` int64: the encoded target (class index) of the first
        classification head for each of the split's rows, in split order."""
        key = target_key(self._head_targets.balanced_by())
        return self.store(split).class_codes(key)

    def _refit_heads(self, table: ArrowSplit) -> None:
        """The heads fitted again on the train rows that survived preprocessing (``table``),
        when some were left out (:meth:`.TrainFit.refit_heads`)."""
        if not any(b.split == "train" for b in self.bad_rows):
            return
        kept = table.columns([ROW]).column(ROW).to_pylist()
        if kept:
            self.head_options.update(self._train_fit.refit_heads(kept, self.head_options))

    # -- preprocessing ------------------------------------------------------------------
    def processor(self, split: str, source: SplitSource, targets: list[TargetSpec]) -> RowProcessor:
        """The :class:`RowProcessor` of split ``split`` read from ``source``, encoding
        ``targets``, under the spec's bad-row policy."""
        return RowProcessor(
            self.modalities,
            self.columns,
            targets,
            split,
            file=source.file,
            source_rows=source.source_rows,
            raise_errors=self.spec.data.bad_rows == "raise",
            allow_missing=self.spec.data.allow_missing,
        )

    def _preprocess(
        self, name: str, source: SplitSource, targets: list[TargetSpec]
    ) -> ArrowSplit:
        """Split ``name`` preprocessed (:mod:`mmcore.data.split_preprocess`); its bad rows
        are added to :attr:`bad_rows`."""
        rejects = self._train_fit.rejects if name == "train" else {}
        split, records = preprocessed_split(source, self.processor(name, source, targets),
                                            self.spec, self.registry, rejects)
        self.bad_rows.extend(records)
        return split

    def _report(self) -> None:
        """The split warnings and the skipped rows' summary to stderr (``announce``), the
        skipped rows to the run folder (``output_dir``)."""
        if self.announce:
            for warning in self.split_warnings:
                print(f"warning: {warning}", file=sys.stderr)
        if not self.bad_rows:
            return
        counts = {name: self.num_rows(name) for name in self.splits}
        if self.announce:
            print(summary(self.bad_rows, counts), file=sys.stderr)
        if self.output_dir is not None:
            self.write_bad_rows(self.output_dir / "bad_rows.json")

    # -- access -------------------------------------------------------------------------
    def _prepared(self, table: ArrowSplit) -> PreparedSplit:
        return PreparedSplit(table, self.modalities, list(self.spec.heads),
                             self.spec.data.in_memory)

    def _streamed(self, name: str, source: SplitSource) -> StreamedSplit:
        def processor(present: set[str]) -> RowProcessor:  # the targets the stream holds
            return self.processor(name, source, self._targets(present))

        # self.bad_rows is this set-up's list: a stream's skipped rows join it as it is read
        return StreamedSplit(name, source, processor, self.bad_rows.append)

    def store(self, split: str) -> SplitStore:
        """Where ``split``'s rows are kept (:mod:`mmcore.data.split_store`): its prepared
        table (``.table()``, held in memory as ``.memory`` after a loader) or its stream;
        :class:`DataError` naming the splits there are for another name."""
        if split not in self._stores:
            raise DataError(
                f"no split {split!r}; the data has {', '.join(self.splits) or 'no splits'}"
                + ("" if self.splits else " (call setup() first)")
            )
        return self._stores[split]

    def num_rows(self, split: str) -> int:
        """Rows of ``split`` that batches are made of (bad rows left out).

        In streaming mode: the rows of the split's stream counted once without
        preprocessing, so skipped bad rows are included.
        """
        return self.store(split).num_rows()

    def loader(
        self,
        split: str,
        *,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        epoch: int = 0,
        num_workers: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        pin_memory: bool = False,
        balanced: bool = False,
        start_batch: int = 0,
    ) -> DataLoader:
        """A ``DataLoader`` of :class:`~mmcore.batch.Batch` for ``split``.

        The order is a pure function of ``(seed, epoch)`` (a resumed run sees the same
        order); with ``world_size > 1`` this rank gets every ``world_size``-th row of it
        (padded by repetition to equal length unless ``drop_last``; ``Batch.index`` tells
        repeated rows apart). ``loader.batch_sampler.set_epoch(e)`` re-seeds a loader that is
        reused across epochs. Streaming mode: see :mod:`mmcore.data.streaming`.

        ``balanced=True`` (``train.sampler="balanced"``) draws ``num_rows(split)`` rows with
        replacement instead, each class of the first classification head equally likely
        (:func:`~mmcore.data.loader.balanced_order`), still a pure function of
        ``(seed, epoch)`` and sharded the same way.

        ``start_batch`` leaves out the epoch's first batches (resuming mid-epoch): a table
        skips them without reading them, a stream reads and drops them.
        """
        plan = LoaderPlan(batch_size=batch_size, shuffle=shuffle, seed=seed, epoch=epoch,
                          num_workers=num_workers, drop_last=drop_last, rank=rank,
                          world_size=world_size, pin_memory=pin_memory,
                          start_batch=start_batch)
        return self.store(split).loader(plan, self.class_codes(split) if balanced else None)

    def external(self, path: str | Path, *, name: str = "external") -> str:
        """Add every row of another data file (or folder) as a new split and return its name.

        Uses the fitted modalities and ``head_options``; relative paths inside the file
        resolve against the file's folder. Targets are encoded for the heads whose target
        column the file has. The same bad-row policy applies. Always read in full (not
        streamed).
        """
        split = name
        n = 2
        while split in self.splits:
            split = f"{name}{n}"
            n += 1
        start = len(self.bad_rows)
        with src.progress_bars(self.progress):
            source = file_split(self.spec, path)
            check_columns({"": source}, required_columns(self.modalities, self.columns))
            present = set(source.dataset.column_names)
            table = self._preprocess(split, source, self._targets(present))
        self._stores[split] = self._prepared(table)
        self.splits.append(split)
        if len(self.bad_rows) > start and self.announce:
            print(summary(self.bad_rows[start:], {split: len(table)}), file=sys.stderr)
        return split

    def batch_from_rows(self, rows: list[dict[str, Any]], first_row: int = 0) -> Batch:
        """Raw rows (column -> value; a column left out counts as missing) -> one
        :class:`Batch` (:func:`mmcore.rows.collate_rows`, as prediction makes it). Relative
        paths resolve against each modality's ``root``. Targets are included for heads whose
        target column every row has. A bad value raises :class:`DataError` naming the row
        index (counted from ``first_row``: the rows may be a chunk of a longer input) and
        column."""
        present = {
            h.target for h in self.spec.heads.values() if all(h.target in row for row in rows)
        }
        return collate_rows(self.modalities, rows, allow_missing=self.spec.data.allow_missing,
                            first_row=first_row, targets=self._targets(present))

    def write_bad_rows(self, path: Path) -> None:
        """Write :attr:`bad_rows` (CSV if ``path`` ends in ``.csv``, else JSON)."""
        write_bad_rows(self.bad_rows, path)
