"""A whole split through :class:`~mmcore.data.preprocess.RowProcessor`: one cached
``Dataset.map`` into an Arrow table (:func:`preprocessed_table`), then its bad rows found and
left out, or the first raised (:func:`drop_bad_rows`); :func:`preprocessed_split` does both.

The table records every error that does not depend on the bad-row policy, so one cached table
serves every policy: which rows are bad is decided after the map, from ``data.allow_missing``
and the rows the train fit rejected (:attr:`mmcore.data.train_fit.TrainFit.rejects`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow.compute as pc

from mmcore.data import sources as src
from mmcore.data.bad_rows import MISSING_REASON, BadRow, bad_row_message
from mmcore.data.preprocess import RowProcessor, cache_key
from mmcore.data.splits import read_column
from mmcore.data.storage import ERROR, ERROR_COLUMN, ROW, modality_key, table_features
from mmcore.errors import DataError, PluginError
from mmcore.modality import Modality, rooted
from mmcore.plugins.registry import Registry
from mmcore.rows import adapt_to_rows
from mmcore.spec.model import Spec

if TYPE_CHECKING:  # imported where used: checking a spec's data imports neither
    import datasets

    from mmcore.data.loader import ArrowSplit
    from mmcore.data.split_sources import SplitSource

#: Rows per ``Dataset.map`` batch and per Arrow record batch written: small enough that a
#: batch of large arrays (spectrograms, images) stays a few MB in memory.
MAP_BATCH_SIZE = 256


def preprocessed_root(spec: Spec) -> Path:
    """Where preprocessed tables and fitted modality state are cached (made when missing):
    ``data.cache_dir``, else ``datasets``' cache."""
    root = src.default_cache_root(spec)
    root.mkdir(parents=True, exist_ok=True)
    return root


def plugin_versions(
    spec: Spec, registry: Registry, modalities: Iterable[str]
) -> dict[str, str | None]:
    """Modality name -> the version of its plugin (part of every cache key), ``None`` when
    the registry does not know it."""
    out = {}
    for name in modalities:
        try:
            out[name] = registry.get("modality", spec.modalities[name].plugin_name).version
        except (PluginError, KeyError):
            out[name] = None
    return out


def preprocessed_split(
    source: SplitSource,
    processor: RowProcessor,
    spec: Spec,
    registry: Registry,
    rejects: Mapping[int, tuple[str, str]],
) -> tuple[ArrowSplit, list[BadRow]]:
    """The rows of ``source`` through ``processor`` (its split's name, targets and bad-row
    policy) into the cache (:func:`preprocessed_table`; the modalities resolve relative paths
    against ``source.root`` meanwhile), less their bad rows (:func:`drop_bad_rows`, with the
    train fit's ``rejects``), and those rows."""
    cache_root = preprocessed_root(spec)
    with rooted(processor.modalities, source.root):
        versions = plugin_versions(spec, registry, processor.modalities)
        table = preprocessed_table(processor.split, source.dataset, processor, versions,
                                   cache_root, spec.data.num_proc)
    return drop_bad_rows(table, processor, spec.data.allow_missing, rejects)


def preprocessed_table(
    name: str,
    dataset: Any,
    processor: RowProcessor,
    versions: Mapping[str, str | None],
    cache_root: Path,
    num_proc: int | None,
) -> datasets.Dataset:
    """Split ``name``'s raw rows (a ``datasets.Dataset``) mapped through ``processor`` into a
    table cached under ``cache_root``, keyed by the rows, the fitted modalities, the targets
    and the plugins' ``versions`` (:func:`~mmcore.data.preprocess.cache_key`). Modalities
    that adapt to the rows they preprocess together read the split first, except on the
    train split, where they were fitted. The modalities' roots are the caller's to set."""
    if name != "train":
        adapt_split(dataset, processor.modalities, processor.columns)
    targets = processor.targets
    key = cache_key(
        dataset._fingerprint, processor.modalities, processor.columns, targets, versions
    )
    return dataset.map(
        processor,
        batched=True,
        batch_size=MAP_BATCH_SIZE,
        writer_batch_size=MAP_BATCH_SIZE,
        with_indices=True,
        remove_columns=dataset.column_names,
        features=table_features(list(processor.modalities), [t.name for t in targets]),
        num_proc=num_proc,
        new_fingerprint=key,
        cache_file_name=str(cache_root / f"mmcore-{key}.arrow"),
        desc=f"mmcore: preprocessing {name}",
    )


def adapt_split(
    dataset: Any, modalities: Mapping[str, Modality], columns: Mapping[str, list[str]]
) -> None:
    """Modalities that adapt to the rows they preprocess together
    (``standardize(new_groups="own")``) read the split's inputs first."""
    adapting = {n: m for n, m in modalities.items() if m.adapts()}
    if adapting:
        read = {c for n, m in adapting.items() for c in [*columns[n], *m.context_columns()]}
        table = dataset.select_columns(sorted(read & set(dataset.column_names))).to_dict()
        adapt_to_rows(adapting, columns, table)


def refuse_adapting(modalities: Mapping[str, Modality]) -> None:
    """A :class:`DataError` for the first modality that adapts to a whole split, which a
    stream (``data.streaming=True``) cannot give it."""
    for name, modality in modalities.items():
        if modality.adapts():
            raise DataError(
                f"modalities.{name}: standardize(new_groups='own') reads every row of a "
                "split before the first is standardised, which data.streaming=True cannot "
                "do; set new_groups='training' or stream no data"
            )


def drop_bad_rows(
    table: datasets.Dataset,
    processor: RowProcessor,
    allow_missing: bool,
    rejects: Mapping[int, tuple[str, str]],
) -> tuple[ArrowSplit, list[BadRow]]:
    """The preprocessed ``table`` without its bad rows, and those rows in split order; a
    :class:`DataError` for the first instead when ``processor.raise_errors``
    (``data.bad_rows="raise"``).

    A row is bad when preprocessing recorded an error, when a modality is missing and
    ``allow_missing`` is false, or when its split row is in ``rejects`` (split row ->
    ``(column, reason)``: values the train fit could not take, kept by preprocessing)."""
    from mmcore.data.loader import ArrowSplit

    split_rows = read_column(table, ROW).to_numpy()
    found, bad = _recorded_errors(table)
    if not allow_missing:
        _add(found, bad, _missing_values(table, processor.columns, bad))
    if rejects:
        _add(found, bad, _rejected(split_rows, rejects, bad))
    files = [f["filename"] for f in table.cache_files]  # the map's output: no index mapping
    if not found:
        return ArrowSplit(table, files=files), []
    records = [processor.bad_row(int(split_rows[i]), *found[i]) for i in sorted(found)]
    if processor.raise_errors:
        raise DataError(bad_row_message(records[0]))
    return ArrowSplit(table, np.flatnonzero(~bad), files), records


def _add(
    found: dict[int, tuple[str, str]], bad: np.ndarray, more: Mapping[int, tuple[str, str]]
) -> None:
    found.update(more)
    bad[list(more)] = True


def _recorded_errors(table: datasets.Dataset) -> tuple[dict[int, tuple[str, str]], np.ndarray]:
    """Position -> ``(column, reason)`` of the errors preprocessing recorded, and the mask
    of those positions."""
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
    return found, bad


def _missing_values(
    table: datasets.Dataset, columns: Mapping[str, Sequence[str]], bad: np.ndarray
) -> dict[int, tuple[str, str]]:
    """Position -> ``(column, reason)`` of the rows not yet ``bad`` that lack a modality
    (``columns``: modality name -> the column(s) it reads)."""
    found: dict[int, tuple[str, str]] = {}
    bad = bad.copy()
    for modality, names in columns.items():
        values = read_column(table, modality_key(modality))
        if not values.null_count:
            continue
        missing = pc.is_null(values).to_numpy(zero_copy_only=False) & ~bad
        for i in np.flatnonzero(missing):
            found[int(i)] = (",".join(names), MISSING_REASON)
        bad |= missing
    return found


def _rejected(
    split_rows: np.ndarray, rejects: Mapping[int, tuple[str, str]], bad: np.ndarray
) -> dict[int, tuple[str, str]]:
    """Position -> ``(column, reason)`` of the rows not yet ``bad`` whose split row the train
    fit rejected (bad for the fit, kept by preprocessing)."""
    where = np.flatnonzero(np.isin(split_rows, list(rejects)) & ~bad)
    return {int(i): rejects[int(split_rows[i])] for i in where}
