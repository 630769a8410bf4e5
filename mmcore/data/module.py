"""``DataModule``: a spec's data from source files to collated batches."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow.compute as pc

from mmcore.data import fit_cache
from mmcore.data import sources as src
from mmcore.data.bad_rows import MISSING_REASON, BadRow, bad_row_message, summary, write_bad_rows
from mmcore.data.fitting import fit_leaving_out
from mmcore.data.preprocess import (
    RowProcessor,
    TargetSpec,
    cache_key,
    is_missing_target,
    value_is_missing,
)
from mmcore.data.splits import (
    empty_split_reason,
    group_ids,
    grouped_split,
    read_column,
    rows_by_split_column,
    seeded_split,
)
from mmcore.data.storage import (
    ERROR,
    ERROR_COLUMN,
    ROW,
    decode_arrays,
    modality_key,
    table_features,
    target_key,
)
from mmcore.errors import DataError, PluginError
from mmcore.heads.targets import HeadTargets, head_targets
from mmcore.modality import Modality, rooted
from mmcore.plugins.default import get_registry
from mmcore.plugins.registry import Registry
from mmcore.rows import adapt_to_rows
from mmcore.spec.model import Spec

if TYPE_CHECKING:  # imported where used: checking a spec's data imports neither
    import datasets
    from torch.utils.data import DataLoader

    from mmcore.batch import Batch
    from mmcore.data.loader import ArrowSplit
    from mmcore.data.memory import MemorySplit

#: Rows per ``Dataset.map`` batch and per Arrow record batch written: small enough that a
#: batch of large arrays (spectrograms, images) stays a few MB in memory.
MAP_BATCH_SIZE = 256


@dataclass
class SplitSource:
    """A split's raw rows and where they came from (see :class:`mmcore.data.sources.Source`)."""

    dataset: Any
    file: str
    root: Path | None
    source_rows: np.ndarray | None = None


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
        self.columns = {name: spec.modalities[name].columns for name in self.modalities}
        # each head's target side: fitting and checking targets imports no built-in head
        # (torch); a plugin's head class is imported here
        self._head_targets: dict[str, type[HeadTargets]] = {
            name: head_targets(self.registry.get("head", head.kind))
            for name, head in spec.heads.items()
        }
        self._tables: dict[str, ArrowSplit] = {}
        self._memory: dict[str, MemorySplit] = {}  # splits held in memory, built on first use
        self._class_codes: dict[str, np.ndarray] = {}
        self._streams: dict[str, SplitSource] = {}
        self._stream_rows: dict[str, int] = {}
        # the train rows whose values a modality's fit could not take: split row ->
        # (column, reason); and each fitted head's raw train targets, to fit again on the
        # rows that survive preprocessing (_refit_targets)
        self._fit_rejects: dict[int, tuple[str, str]] = {}
        self._train_source: SplitSource | None = None
        self._train_targets: dict[str, list[Any]] = {}

    # -- setup --------------------------------------------------------------------------
    @property
    def streaming(self) -> bool:
        return bool(self.spec.data.streaming)

    def setup(self, fit: bool = True) -> None:
        """Load the sources into splits, check every column the spec names (before any other
        work), fit the modalities and target encodings on the train split (``fit=True``; with
        ``fit=False`` the modalities are taken as loaded and ``head_options`` are the spec's),
        then preprocess every split (not in streaming mode, where it happens lazily)."""
        self.bad_rows = []
        self._tables, self._memory = {}, {}
        self._class_codes = {}
        self._streams = {}
        self._stream_rows = {}
        self._fit_rejects, self._train_targets = {}, {}
        if self.spec.train.sampler == "balanced":
            self._check_balanced()
        with self._progress_bars():
            splits = self._load_splits()
            if fit:
                self._fit(splits)
            else:
                self.head_options = {n: dict(h.options) for n, h in self.spec.heads.items()}
            self.splits = list(splits)
            if self.streaming:
                self._refuse_adapting()
                self._streams = splits
                return
            for name, split in splits.items():
                self._tables[name] = self._preprocess(name, split, self._targets())
                if name == "train" and fit:
                    self._refit_targets()
        if self.announce:
            for warning in self.split_warnings:
                print(f"warning: {warning}", file=sys.stderr)
        self._report_bad_rows()

    def check(self) -> dict[str, int | None]:
        """What :meth:`setup` checks before any work, and nothing more (``mmcore validate``):
        the sampler, that every source exists and reads as a table, and that every column the
        spec names is in it, then the split assignment and the heads' options against the
        train split's targets (:meth:`_fit_heads`). No modality is fitted, nothing is
        preprocessed or kept.

        Returns the rows of each split, before bad rows are left out (``None`` for a streamed
        split, not counted); :attr:`split_warnings` says why a split is empty or missing."""
        if self.spec.train.sampler == "balanced":
            self._check_balanced()
        with self._progress_bars():
            splits = self._load_splits(schema_only=True)
            train = splits.get("train")
            self._check_modalities(train)
            if train is not None:  # the heads' options against the classes in the data
                targets = [self.spec.heads[n].target for n in self._fitted_heads()]
                self._fit_heads(train, self._read_train(train, list(dict.fromkeys(targets))))
        sizes: dict[str, int | None] = {}
        for name, split in splits.items():
            try:
                sizes[name] = len(split.dataset)
            except TypeError:  # an IterableDataset: counting means reading it all
                sizes[name] = None
        return sizes

    def _check_modalities(self, train: SplitSource | None) -> None:
        """Each modality's own :meth:`Modality.check` (e.g. that a folder an option names
        exists), rooted as for fitting; one :class:`DataError` listing every failure."""
        failed = []
        with self._rooted(train.root if train is not None else None):
            for name, modality in self.modalities.items():
                try:
                    modality.check()
                except (DataError, PluginError) as exc:
                    failed.append(f"modalities.{name}.options: {exc}")
        if failed:
            raise DataError("\n".join(failed))

    def _targets(self, present: set[str] | None = None) -> list[TargetSpec]:
        # the head class itself (imported now): its name is part of the cache key
        return [
            TargetSpec(name, head.target, self.registry.get("head", head.kind).load(),
                       self.head_options[name])
            for name, head in self.spec.heads.items()
            if present is None or head.target in present
        ]

    def _load_splits(self, schema_only: bool = False) -> dict[str, SplitSource]:
        """The splits (``schema_only``: tables read a column at a time, as :meth:`check`
        needs, where the format allows; see :func:`mmcore.data.sources.load_path`)."""
        spec, data = self.spec, self.spec.data
        self.split_warnings = []
        cache = src.cache_dir(spec)
        given: dict[str, SplitSource] = {}
        single: SplitSource | None = None
        if data.dataset is not None:
            obj = data.dataset
            root = src.data_root(spec, None)
            if isinstance(obj, Mapping):
                given = {
                    src.split_name(k): SplitSource(self._as_stream(v), f"data.dataset[{k!r}]", root)
                    for k, v in obj.items()
                }
            else:
                single = SplitSource(self._as_stream(obj), "data.dataset", root)
        elif data.path is not None:
            path = src.resolve(spec, data.path, "data.path")
            loaded = src.load_path(path, data.format, cache, self.streaming, schema_only)
            root = src.data_root(spec, path)
            if isinstance(loaded, dict):
                given = {
                    src.split_name(k): SplitSource(v, f"{path} ({k})", root)
                    for k, v in loaded.items()
                }
            else:
                single = SplitSource(loaded, str(path), root)
        else:
            for name in src.SPLITS:
                value = getattr(data, name)
                if value is None:
                    continue
                path = src.resolve(spec, value, f"data.{name}")
                loaded = src.load_path(path, data.format, cache, self.streaming, schema_only)
                if isinstance(loaded, dict):
                    if len(loaded) != 1:
                        raise DataError(
                            f"data.{name}: {path} holds several splits ({', '.join(loaded)}); "
                            "give one split per file, or give the folder as data.path"
                        )
                    loaded = next(iter(loaded.values()))
                given[name] = SplitSource(loaded, str(path), src.data_root(spec, path))
        group_column = data.split.group_column
        if single is not None:
            if group_column is not None and data.split_column is not None:
                raise DataError(
                    f"data.split.group_column={group_column!r} groups the seeded split, but "
                    f"data.split_column={data.split_column!r} already assigns the splits; "
                    "remove one of them"
                )
            self._check_columns(
                {"": single}, split_column=data.split_column, group_column=group_column
            )
            return self._split_single(single)
        for field, value in (("split_column", data.split_column),
                             ("split.group_column", group_column)):
            if value is not None:
                raise DataError(
                    f"data.{field}={value!r} applies to a single table, but the data already "
                    f"comes in splits ({', '.join(given)}); remove data.{field}"
                )
        self._check_columns(given)
        if not self.streaming:  # an empty split is left out, as a seeded split's would be
            for name, split in list(given.items()):
                if len(split.dataset) == 0:
                    self.split_warnings.append(
                        f"the {name} split ({split.file}) has no rows; it is left out")
                    del given[name]
        return _ordered(given)

    def _as_stream(self, dataset: Any) -> Any:
        dataset = src.undecoded(dataset)
        datasets = src.datasets_module()  # the data is a datasets object: imported already
        if self.streaming and isinstance(dataset, datasets.Dataset):
            return dataset.to_iterable_dataset()
        if not self.streaming and isinstance(dataset, datasets.IterableDataset):
            raise DataError(
                "data.dataset is a datasets.IterableDataset; set data.streaming=True to use it"
            )
        return dataset

    def _required_columns(self, with_targets: bool = True) -> dict[str, list[str]]:
        """column -> the spec fields that name it."""
        needed: dict[str, list[str]] = {}
        for name, modality in self.modalities.items():
            for column in self.columns[name]:
                needed.setdefault(column, []).append(f"modalities.{name}.column")
            for column in modality.context_columns():
                needed.setdefault(column, []).append(f"modalities.{name}.options")
        if with_targets:
            for name, head in self.spec.heads.items():
                needed.setdefault(head.target, []).append(f"heads.{name}.target")
        return needed

    def _check_columns(
        self,
        splits: Mapping[str, SplitSource],
        split_column: str | None = None,
        with_targets: bool = True,
        group_column: str | None = None,
    ) -> None:
        needed = self._required_columns(with_targets)
        if split_column is not None:
            needed.setdefault(split_column, []).append("data.split_column")
        if group_column is not None:
            needed.setdefault(group_column, []).append("data.split.group_column")
        problems = []
        for name, split in splits.items():
            existing = src.column_names(split.dataset)
            missing = [c for c in needed if c not in existing]
            if missing:
                where = f"{split.file}" + (f" (split {name!r})" if name else "")
                named = "; ".join(f"{c!r} ({', '.join(needed[c])})" for c in missing)
                problems.append(
                    f"{where} has no column {named}. Its columns are: {', '.join(existing)}"
                )
        if problems:
            raise DataError("missing column(s):\n  " + "\n  ".join(problems))

    def _split_single(self, single: SplitSource) -> dict[str, SplitSource]:
        data = self.spec.data
        if self.streaming:
            from mmcore.data.streaming import split_stream

            return {
                name: SplitSource(ds, single.file, single.root)
                for name, ds in split_stream(single.dataset, data).items()
            }
        if data.split_column is not None:
            rows = rows_by_split_column(single.dataset, data.split_column, single.file)
        else:
            labels = None
            column = self._stratify_column() if data.split.stratify else None
            if column is not None:
                labels = read_column(single.dataset, column).to_pylist()
            split = data.split
            groups = None
            if split.group_column is not None:
                groups = group_ids(single.dataset, split.group_column, single.file)
                rows = grouped_split(groups, split.validation, split.test, split.seed, labels)
            else:
                rows = seeded_split(
                    len(single.dataset), split.validation, split.test, split.seed, labels
                )
            for name in ("validation", "test"):
                reason = None if name in rows else empty_split_reason(
                    name, getattr(split, name), len(single.dataset), labels, column, groups,
                    split.group_column,
                )
                if reason is not None:
                    self.split_warnings.append(f"no {name} split: {reason}")
        return {
            name: SplitSource(single.dataset.select(idx), single.file, single.root, idx)
            for name, idx in rows.items()
        }

    def _stratify_column(self) -> str | None:
        name = self._classification_head()
        return None if name is None else self.spec.heads[name].target

    def _classification_head(self) -> str | None:
        """The first categorical head (``Head.categorical``): stratified splits and the
        balanced sampler go by its target."""
        for name in self.spec.heads:
            if getattr(self._head_targets[name], "categorical", False):
                return name
        return None

    def _check_balanced(self) -> str:
        """The head the balanced sampler balances by; raise unless there is one to use."""
        if self.streaming:
            raise DataError(
                "train.sampler='balanced' needs the whole train split prepared up front; it "
                "does not work with data.streaming=True (use train.sampler='shuffle')"
            )
        name = self._classification_head()
        if name is None:
            raise DataError(
                "train.sampler='balanced' balances by the first classification head's target, "
                f"but no head is a classification head (heads: {', '.join(self.spec.heads)})"
            )
        return name

    def class_codes(self, split: str) -> np.ndarray:
        """``[num_rows(split)]`` int64: the encoded target (class index) of the first
        classification head for each of the split's rows, in split order."""
        if split in self._class_codes:  # read once per split, not every epoch
            return self._class_codes[split]
        name = self._check_balanced()
        key = target_key(name)
        arrow = self._table(split).columns([key, f"{key}.shape", f"{key}.dtype"])
        self._class_codes[split] = np.array(decode_arrays(arrow, key), dtype=np.int64)
        return self._class_codes[split]

    # -- fitting ------------------------------------------------------------------------
    def _fit(self, splits: Mapping[str, SplitSource]) -> None:
        if "train" not in splits:
            raise DataError(
                f"cannot fit: the data has no train split (splits: {', '.join(splits) or 'none'})"
            )
        train = splits["train"]
        cached = {} if self.streaming else self._load_cached_fits(train)
        rows = self._read_train(
            train, self._fit_columns(skip={n for n, v in cached.items() if v is True})
        )
        with self._rooted(train.root):
            for name, modality in self.modalities.items():
                if not _fits(modality) or cached.get(name) is True:
                    continue
                columns = self.columns[name]
                values = (
                    rows[columns[0]]
                    if len(columns) == 1
                    else [list(v) for v in zip(*(rows[c] for c in columns), strict=True)]
                )
                keep = [i for i, v in enumerate(values)
                        if not value_is_missing(modality, v, columns)]
                self._fit_modality(name, modality, train, values, keep, rows)
                if name in cached:  # a key, not True: store what was just fitted
                    fit_cache.store_fitted(self._cache_root(), cached[name], modality)
        self._train_source = train
        self._train_targets = {n: rows[self.spec.heads[n].target] for n in self._fitted_heads()}
        self.head_options = self._fit_heads(train, rows)

    def _read_train(self, train: SplitSource, columns: list[str]) -> dict[str, list[Any]]:
        """Column -> the train split's values (the first rows only, when streamed)."""
        if self.streaming:
            from mmcore.data.streaming import first_rows

            return first_rows(train.dataset, columns)
        if not columns:
            return {}
        # One Arrow read of every fitted column: datasets gathers a split's indices mapping
        # row by row, so reading column by column repeated that gather per column.
        table = train.dataset.select_columns(columns).with_format("arrow")[:]
        return {c: table.column(c).to_pylist() for c in columns}

    def _fitted_heads(self) -> list[str]:
        """The heads that fit something on the train split's targets (e.g. their classes)."""
        return [n for n in self.spec.heads
                if self._head_targets[n].fit_targets is not HeadTargets.fit_targets]

    def _fit_heads(
        self, train: SplitSource, rows: Mapping[str, list[Any]]
    ) -> dict[str, dict[str, Any]]:
        """Each head's options with what it fits on the train targets in ``rows``; a
        :class:`DataError` when the options do not fit the data (a ``class_weights`` list of
        the wrong length, a class it names that the data lacks). :meth:`setup` and
        :meth:`check` (``mmcore validate``) both run it, so they refuse the same specs."""
        fitted = self._fitted_heads()
        out = {}
        for name, head in self.spec.heads.items():
            options = dict(head.options)
            if name in fitted:
                options.update(self._fit_targets(
                    name, self._head_targets[name], rows[head.target], options, train))
            out[name] = options
        return out

    def _fit_modality(
        self,
        name: str,
        modality: Modality,
        train: SplitSource,
        values: list[Any],
        keep: list[int],
        rows: Mapping[str, list[Any]],
    ) -> None:
        """``modality.fit_rows`` on the train rows ``keep``; values it cannot take are left
        out of the fit (:func:`~mmcore.data.fitting.fit_leaving_out`) and their rows
        recorded as bad (preprocessing normally rejects them too, with its own reason)."""
        context = modality.context_columns()

        def fit(positions: Sequence[int]) -> None:
            modality.fit_rows([values[keep[j]] for j in positions],
                              [{c: rows[c][keep[j]] for c in context} for j in positions])

        label = ",".join(self.columns[name])
        try:
            rejected = fit_leaving_out(fit, len(keep))
        except ValueError as exc:
            raise DataError(
                f"{train.file} (split 'train'), column {label!r}: cannot fit modality {name!r} "
                f"on the training values: {exc}"
            ) from None
        for j, reason in rejected.items():
            self._fit_rejects.setdefault(keep[j], (
                label, f"modality {name!r} cannot be fitted on this value: {reason}"))

    def _refit_targets(self) -> None:
        """Fit the targets again on the train rows that survived preprocessing, when some
        were left out: class frequencies (``class_weights="balanced"``) and a regression
        head's mean and std count kept rows only. ``classes`` stay as fitted: the split's
        stored targets are encoded with them."""
        table = self._tables.get("train")
        if table is None or not any(b.split == "train" for b in self.bad_rows):
            return
        kept = table.columns([ROW]).column(ROW).to_pylist()
        if not kept:
            return
        train = self._train_source
        for name, column in self._train_targets.items():
            options = dict(self.spec.heads[name].options)
            if "classes" in self.head_options[name]:
                options["classes"] = self.head_options[name]["classes"]
            values = [column[row] for row in kept]
            cls = self._head_targets[name]
            options.update(self._fit_targets(name, cls, values, options, train))
            self.head_options[name] = options

    def _fit_targets(
        self,
        name: str,
        cls: type[HeadTargets],
        column_values: list[Any],
        options: dict[str, Any],
        train: SplitSource,
    ) -> dict[str, Any]:
        """``cls.fit_targets`` on the present values. When it fails, the rows whose value it
        cannot take alone are bad rows: the first is raised, or with ``data.bad_rows="skip"``
        they are left out of the fit (and skipped when their targets are encoded)."""
        present = [(i, v) for i, v in enumerate(column_values) if not is_missing_target(v)]
        try:
            return cls.fit_targets([v for _, v in present], options)
        except ValueError as exc:
            error = exc
        except DataError as exc:  # the options do not fit the data (e.g. class_weights)
            raise DataError(f"heads.{name}.options: {exc}") from None
        usable = []
        for row, value in present:
            try:
                cls.fit_targets([value], options)
            except ValueError as exc:
                if self.spec.data.bad_rows == "raise":
                    source = None if train.source_rows is None else int(train.source_rows[row])
                    bad = BadRow("train", row, self.spec.heads[name].target,
                                 f"target of head {name!r}: {exc}", train.file, source)
                    raise DataError(bad_row_message(bad)) from None
                continue
            usable.append(value)
        try:
            return cls.fit_targets(usable, options)
        except ValueError as exc:
            error = exc
        raise DataError(
            f"{train.file} (split 'train'), column {self.spec.heads[name].target!r}: cannot fit "
            f"the targets of head {name!r}: {error}"
        )

    def _cache_root(self) -> Path:
        root = src.default_cache_root(self.spec)
        root.mkdir(parents=True, exist_ok=True)
        return root

    def _load_cached_fits(self, train: SplitSource) -> dict[str, str | bool]:
        """Fitted state from the cache (:mod:`mmcore.data.fit_cache`): modality name -> ``True``
        when loaded, or the key to store its fit under when it still has to be fitted."""
        out: dict[str, str | bool] = {}
        fingerprint = getattr(train.dataset, "_fingerprint", None)
        if fingerprint is None:
            return out
        versions = self._versions()
        with self._rooted(train.root):
            for name, modality in self.modalities.items():
                if not (_fits(modality) and fit_cache.can_cache(modality)):
                    continue
                key = fit_cache.fit_key(fingerprint, modality, self.columns[name], versions[name])
                loaded = fit_cache.load_fitted(self._cache_root(), key, modality)
                out[name] = True if loaded else key
        return out

    def _fit_columns(self, skip: set[str] | None = None) -> list[str]:
        """The columns the fit reads; ``skip``: modalities whose fit came from the cache."""
        columns = [
            c for name, m in self.modalities.items() if _fits(m)
            and (skip is None or name not in skip)
            for c in [*self.columns[name], *m.context_columns()]
        ]
        columns += [
            h.target for n, h in self.spec.heads.items()
            if self._head_targets[n].fit_targets is not HeadTargets.fit_targets
        ]
        return list(dict.fromkeys(columns))

    # -- preprocessing ------------------------------------------------------------------
    def _rooted(self, root: Path | None) -> contextlib.AbstractContextManager[None]:
        """Modalities resolve relative paths against ``root`` for the duration."""
        return rooted(self.modalities, root)

    def _progress_bars(self) -> contextlib.AbstractContextManager:
        return src.progress_bars(self.progress)

    def _versions(self) -> dict[str, str | None]:
        out = {}
        for name in self.modalities:
            plugin = self.spec.modalities[name].plugin_name
            try:
                out[name] = self.registry.get("modality", plugin).version
            except (PluginError, KeyError):
                out[name] = None
        return out

    def processor(self, split: str, source: SplitSource, targets: list[TargetSpec]) -> RowProcessor:
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
        dataset = source.dataset
        cache_root = src.default_cache_root(self.spec)
        cache_root.mkdir(parents=True, exist_ok=True)
        with self._rooted(source.root):
            if name != "train":  # the train split's groups are fitted
                self._adapt(dataset)
            processor = self.processor(name, source, targets)
            key = cache_key(
                dataset._fingerprint, self.modalities, self.columns, targets, self._versions()
            )
            table = dataset.map(
                processor,
                batched=True,
                batch_size=MAP_BATCH_SIZE,
                writer_batch_size=MAP_BATCH_SIZE,
                with_indices=True,
                remove_columns=dataset.column_names,
                features=table_features(list(self.modalities), [t.name for t in targets]),
                num_proc=self.spec.data.num_proc,
                new_fingerprint=key,
                cache_file_name=str(cache_root / f"mmcore-{key}.arrow"),
                desc=f"mmcore: preprocessing {name}",
            )
        return self._drop_bad_rows(name, source, table)

    def _adapt(self, dataset: Any) -> None:
        """Modalities that adapt to the rows they preprocess together
        (``standardize(new_groups="own")``) read the split's inputs first."""
        adapting = {n: m for n, m in self.modalities.items() if m.adapts()}
        if adapting:
            read = {c for n, m in adapting.items() for c in [*self.columns[n],
                                                              *m.context_columns()]}
            table = dataset.select_columns(sorted(read & set(dataset.column_names))).to_dict()
            adapt_to_rows(adapting, self.columns, table)

    def _refuse_adapting(self) -> None:
        for name, modality in self.modalities.items():
            if modality.adapts():
                raise DataError(
                    f"modalities.{name}: standardize(new_groups='own') reads every row of a "
                    "split before the first is standardised, which data.streaming=True cannot "
                    "do; set new_groups='training' or stream no data"
                )

    def _drop_bad_rows(
        self, name: str, source: SplitSource, table: datasets.Dataset
    ) -> ArrowSplit:
        """Find the bad rows of a preprocessed split; raise for the first, or leave them out."""
        from mmcore.data.loader import ArrowSplit

        bad = np.zeros(len(table), dtype=bool)
        found: dict[int, tuple[str, str]] = {}
        errors = read_column(table, ERROR)
        if errors.null_count < len(table):
            where = np.flatnonzero(pc.is_valid(errors).to_numpy(zero_copy_only=False))
            rows = table.with_format("arrow")[where.tolist()]
            for i, column, reason in zip(
                where, rows.column(ERROR_COLUMN).to_pylist(), rows.column(ERROR).to_pylist(),
                strict=True,
            ):
                found[int(i)] = (column, reason)
            bad[where] = True
        if not self.spec.data.allow_missing:
            for modality in self.modalities:
                values = read_column(table, modality_key(modality))
                if not values.null_count:
                    continue
                missing = pc.is_null(values).to_numpy(zero_copy_only=False) & ~bad
                for i in np.flatnonzero(missing):
                    found[int(i)] = (",".join(self.columns[modality]), MISSING_REASON)
                bad |= missing
        split_rows = read_column(table, ROW).to_numpy()
        if name == "train" and self._fit_rejects:  # bad for the fit, kept by preprocess
            for i in np.flatnonzero(np.isin(split_rows, list(self._fit_rejects)) & ~bad):
                found[int(i)] = self._fit_rejects[int(split_rows[i])]
                bad[i] = True
        if not found:
            return ArrowSplit(table)
        positions = sorted(found)
        processor = self.processor(name, source, [])
        records = [processor.bad_row(int(split_rows[i]), *found[i]) for i in positions]
        if self.spec.data.bad_rows == "raise":
            raise DataError(bad_row_message(records[0]))
        self.bad_rows.extend(records)
        return ArrowSplit(table, np.flatnonzero(~bad))

    def _report_bad_rows(self) -> None:
        if not self.bad_rows:
            return
        counts = {name: self.num_rows(name) for name in self.splits if not self.streaming}
        if self.announce:
            print(summary(self.bad_rows, counts), file=sys.stderr)
        if self.output_dir is not None:
            self.write_bad_rows(self.output_dir / "bad_rows.json")

    # -- access -------------------------------------------------------------------------
    def _table(self, split: str) -> ArrowSplit:
        if split not in self._tables:
            if split in self._streams:
                raise DataError(f"split {split!r} is streamed (data.streaming=True): no table")
            raise DataError(
                f"no split {split!r}; the data has {', '.join(self.splits) or 'no splits'}"
                + ("" if self.splits else " (call setup() first)")
            )
        return self._tables[split]

    def num_rows(self, split: str) -> int:
        """Rows of ``split`` that batches are made of (bad rows left out).

        In streaming mode: the rows of the split's stream counted once without
        preprocessing, so skipped bad rows are included.
        """
        if split not in self._tables and split in self._streams:
            from mmcore.data.streaming import count_rows

            if split not in self._stream_rows:
                self._stream_rows[split] = count_rows(self._streams[split].dataset)
            return self._stream_rows[split]
        return len(self._table(split))

    def _head_names(self, split: ArrowSplit) -> list[str]:
        names = set(split.table.column_names)
        return [n for n in self.spec.heads if f"_t.{n}" in names]

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
        codes = self.class_codes(split) if balanced else None
        if split not in self._tables and split in self._streams:
            from mmcore.data.streaming import stream_loader

            source = self._streams[split]
            present = set(src.column_names(source.dataset))
            return stream_loader(
                source.dataset, source.root, self.processor(split, source, self._targets(present)),
                self.bad_rows.append, batch_size=batch_size, shuffle=shuffle, seed=seed,
                epoch=epoch, num_workers=num_workers, drop_last=drop_last, rank=rank,
                world_size=world_size, pin_memory=pin_memory, start_batch=start_batch,
            )
        from torch.utils.data import DataLoader

        from mmcore.data.loader import Collator, ShardedBatchSampler
        from mmcore.data.memory import as_is

        table = self._table(split)
        memory = self._memory_split(split, table)
        sampler = ShardedBatchSampler(
            len(table), batch_size, shuffle=shuffle, seed=seed, epoch=epoch,
            drop_last=drop_last, rank=rank, world_size=world_size, balance_by=codes,
            start_batch=start_batch,
        )
        if memory is not None:  # batched in this process: one index per array, no reads
            return DataLoader(memory, batch_sampler=sampler, collate_fn=as_is,
                              pin_memory=pin_memory)
        return DataLoader(
            table,
            batch_sampler=sampler,
            collate_fn=Collator(self.modalities, self._head_names(table)),
            num_workers=num_workers,
            pin_memory=pin_memory,
        )

    def _memory_split(self, split: str, table: ArrowSplit) -> MemorySplit | None:
        """``split`` held in memory (built on first use, then kept) when ``data.in_memory``
        says so, else ``None``."""
        from mmcore.data.memory import AUTO_LIMIT_BYTES, MemorySplit, split_bytes

        if split in self._memory:
            return self._memory[split]
        setting = self.spec.data.in_memory
        if setting is False or (setting == "auto" and split_bytes(table) > AUTO_LIMIT_BYTES):
            return None
        self._memory[split] = MemorySplit(table, self.modalities, self._head_names(table))
        return self._memory[split]

    def external(self, path: str | Path, *, name: str = "external") -> str:
        """Add every row of another data file (or folder) as a new split and return its name.

        Uses the fitted modalities and ``head_options``; relative paths inside the file
        resolve against the file's folder. Targets are encoded for the heads whose target
        column the file has. The same bad-row policy applies. Always read in full (not
        streamed).
        """
        path = Path(path).expanduser().resolve()
        if not path.exists():
            raise DataError(f"data file {path} does not exist")
        split = name
        n = 2
        while split in self.splits:
            split = f"{name}{n}"
            n += 1
        start = len(self.bad_rows)
        with self._progress_bars():
            loaded = src.load_path(path, "auto", src.cache_dir(self.spec), streaming=False)
            if isinstance(loaded, dict):
                datasets = src.datasets_module()
                loaded = datasets.concatenate_datasets([loaded[k] for k in sorted(loaded)])
            source = SplitSource(loaded, str(path), path if path.is_dir() else path.parent)
            self._check_columns({"": source}, with_targets=False)
            present = set(loaded.column_names)
            self._tables[split] = self._preprocess(split, source, self._targets(present))
            self._memory.pop(split, None)
        self.splits.append(split)
        if len(self.bad_rows) > start and self.announce:
            counts = {split: len(self._tables[split])}
            print(summary(self.bad_rows[start:], counts), file=sys.stderr)
        return split

    def batch_from_rows(self, rows: list[dict[str, Any]], first_row: int = 0) -> Batch:
        """Raw rows (column -> value; a column left out counts as missing) -> one
        :class:`Batch`. Relative paths resolve against each modality's ``root``. Targets
        are included for heads whose target column every row has. A bad value raises
        :class:`DataError` naming the row index (counted from ``first_row``: the rows may be
        a chunk of a longer input) and column."""
        if not rows:
            raise DataError("batch_from_rows: no rows given")
        columns = {c for name, m in self.modalities.items()
                   for c in [*self.columns[name], *m.context_columns()]}
        present = {
            h.target for h in self.spec.heads.values() if all(h.target in row for row in rows)
        }
        batch = {c: [row.get(c) for row in rows] for c in columns | present}
        source = SplitSource(None, "input rows", None)
        processor = self.processor("input", source, self._targets(present))
        processor.raise_errors = True
        processor.hint = False
        processor.file = None
        numbers = range(first_row, first_row + len(rows))
        result = processor.process(batch, list(numbers))
        from mmcore.collate import collate_batch

        return collate_batch(self.modalities, result.inputs, result.targets, numbers)

    def write_bad_rows(self, path: Path) -> None:
        """Write :attr:`bad_rows` (CSV if ``path`` ends in ``.csv``, else JSON)."""
        write_bad_rows(self.bad_rows, path)


def _fits(modality: Modality) -> bool:
    """Whether the modality has something to fit on the training split."""
    cls = type(modality)
    return cls.fit is not Modality.fit or cls.fit_rows is not Modality.fit_rows


def _ordered(splits: Mapping[str, SplitSource]) -> dict[str, SplitSource]:
    first = [s for s in src.SPLITS if s in splits]
    return {name: splits[name] for name in first + [s for s in splits if s not in first]}
