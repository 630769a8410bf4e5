"""What a set-up made, recorded, so that the next set-up of the same spec on the same files
memory-maps it and goes.

:meth:`~mmcore.data.module.DataModule.setup` reads the sources through ``datasets``, fits the
modalities and heads on the train rows and preprocesses every split into a cached Arrow file.
On a warm cache each step finds its result under ``datasets``' fingerprint of the rows, but
getting there still imports ``datasets`` (most of a warm set-up's time) and reads and fits
every train target in Python. A record is keyed by what those results depend on that is
known without reading a row (:func:`record_key`): each source file's path, size and
modification time (what ``datasets``' fingerprint of a local file goes by), the spec's
``data``, ``modalities`` and ``heads``, each modality's class, plugin version, root and
options, the heads' target sides and plugins, and the storage format. It holds what the
set-up made: the heads' fitted options, each split's cache files and the rows left out of it,
the bad rows, the split warnings, and the fit cache's keys of the modalities' fitted state
(:mod:`mmcore.data.fit_cache`).

A set-up is recorded when it fits (not ``fit=False``), reads local csv, json or parquet files
(``data.path`` or one per split; not ``data.dataset``, folders or streams) and every
modality that fits saves its state (:func:`mmcore.data.fit_cache.can_cache`) and none
adapts to a split's rows. A record whose files or fitted states are gone (or damaged) is
ignored: the set-up runs in full and records again.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmcore.data import fit_cache
from mmcore.data import sources as src
from mmcore.data.bad_rows import BadRow
from mmcore.data.split_sources import SplitSource
from mmcore.data.storage import FORMAT_VERSION
from mmcore.data.targets import Targets
from mmcore.data.train_fit import fits
from mmcore.errors import DataError
from mmcore.modality import Modality, rooted
from mmcore.plugins.registry import Registry
from mmcore.spec.model import Spec
from mmcore.spec.roots import base_dir, data_root

if TYPE_CHECKING:
    from mmcore.data.loader import ArrowSplit

#: bumped when what a record holds, or how its key is made, changes
RECORD_VERSION = 1
#: the formats a record's sources may have (read from one local file each)
FILE_FORMATS = ("csv", "json", "parquet")


@dataclass
class Made:
    """What a set-up made (the :class:`~mmcore.data.module.DataModule` attributes of the
    same names); ``tables``: split name -> its preprocessed rows, in split order."""

    head_options: dict[str, dict[str, Any]]
    tables: dict[str, ArrowSplit]
    bad_rows: list[BadRow]
    warnings: list[str]
    #: modality name -> the fit cache's key of its fitted state (the modalities that fit);
    #: ``None``: not known (such a set-up is not recorded)
    fits: dict[str, str] | None
    #: modality name -> its fit loaded from the fit cache (by :func:`recall`; not recorded)
    cached: dict[str, fit_cache.CachedFit] = field(default_factory=dict)


def record_key(
    spec: Spec, modalities: Mapping[str, Modality], registry: Registry, heads: Targets
) -> str | None:
    """The key of the record of fitting ``modalities`` (as given, unfitted) and the heads on
    ``spec``'s data and preprocessing it; ``None`` when such a set-up is not recorded."""
    files = _source_files(spec)
    if files is None or not all(_recordable(m) for m in modalities.values()):
        return None
    state = {
        "record": RECORD_VERSION,
        "storage": FORMAT_VERSION,
        "spec": spec.model_dump(include={"data", "modalities", "heads"}),
        "base": str(base_dir(spec).resolve()),
        "files": [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in files],
        "modalities": {
            name: {
                "class": f"{type(m).__module__}.{type(m).__qualname__}",
                "version": registry.get("modality", spec.modalities[name].plugin_name).version,
                "root": str(Path(m.root).resolve()) if m.root is not None else None,
                "options": m.fingerprint(),
            }
            for name, m in sorted(modalities.items())
        },
        "heads": {
            name: [f"{side.__module__}.{side.__qualname__}",
                   registry.get("head", spec.heads[name].kind).version]
            for name, side in sorted(heads.sides.items())
        },
    }
    text = json.dumps(state, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def recall(spec: Spec, key: str, modalities: Mapping[str, Modality]) -> Made | None:
    """The recorded set-up under ``key``: the splits memory-mapped and the modalities' fitted
    state loaded into ``modalities``; ``None`` when there is no record, or a file or fitted
    state it names is gone (the modalities are then as they were, unless a state that is
    there could not be read: the full set-up fits that modality again)."""
    root = src.default_cache_root(spec)
    try:
        record = json.loads(_path(root, key).read_text(encoding="utf-8"))
        states = {n: record["fits"][n] for n, m in modalities.items() if fits(m)}
        made = Made(record["head_options"],
                    {name: _mapped(split) for name, split in record["splits"].items()},
                    [BadRow(**b) for b in record["bad_rows"]], record["warnings"], states)
    except (OSError, ValueError, KeyError, TypeError):  # gone, damaged, or not a record
        return None
    if not all((fit_cache.folder(root, k) / fit_cache.MARKER).is_file() for k in
               states.values()):
        return None
    with rooted(modalities, data_root(spec)):
        for name, state in states.items():
            loaded = fit_cache.load_fitted(root, state, modalities[name])
            if not loaded:
                return None
            made.cached[name] = loaded
    return made


def _mapped(split: dict[str, Any]) -> ArrowSplit:
    """A recorded split memory-mapped from its files (a ``ValueError`` when they do not hold
    the rows recorded)."""
    from mmcore.data.loader import ArrowSplit, mapped

    table = mapped(split["files"])
    if table.num_rows != split["stored"]:
        raise ValueError(f"{split['files']}: {table.num_rows} rows, not {split['stored']}")
    rows = None if not split["left_out"] else np.delete(
        np.arange(table.num_rows, dtype=np.int64), split["left_out"])
    return ArrowSplit(table, rows, split["files"])


def fit_keys(
    splits: Mapping[str, SplitSource],
    modalities: Mapping[str, Modality],
    columns: Mapping[str, list[str]],
    versions: Mapping[str, str | None],
) -> dict[str, str] | None:
    """The fit cache's key of each modality that fits (:func:`mmcore.data.fit_cache.fit_key`
    on the train split, the modalities rooted as when they are fitted): taken before the fit,
    which changes a modality's fingerprint. ``None`` without a train split with a
    fingerprint."""
    train = splits.get("train")
    fingerprint = getattr(train.dataset, "_fingerprint", None) if train is not None else None
    if train is None or fingerprint is None:
        return None
    with rooted(modalities, train.root):
        return {name: fit_cache.fit_key(fingerprint, m, columns[name], versions[name])
                for name, m in modalities.items() if fits(m)}


def record(spec: Spec, key: str, made: Made) -> None:
    """Record ``made`` under ``key``; nothing when a split is not in cache files, the heads'
    options do not survive JSON unchanged, or the cache cannot be written."""
    if made.fits is None or not all(table.files for table in made.tables.values()):
        return
    root = src.default_cache_root(spec)
    splits = {
        name: {"files": table.files, "stored": table.table.num_rows,
               "left_out": [] if table.rows is None else np.setdiff1d(
                   np.arange(table.table.num_rows), table.rows).tolist()}
        for name, table in made.tables.items()
    }
    state = {"key": key, "head_options": made.head_options, "splits": splits,
             "bad_rows": [asdict(b) for b in made.bad_rows], "warnings": made.warnings,
             "fits": made.fits}
    try:
        text = json.dumps(state)
    except (TypeError, ValueError):  # a plugin head fitted something JSON cannot hold
        return
    if json.loads(text)["head_options"] != made.head_options:  # e.g. a tuple
        return
    path = _path(root, key)
    tmp = path.with_name(f".tmp-{path.name}-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


def _path(root: Path, key: str) -> Path:
    return root / f"mmcore-setup-{key}.json"


def _recordable(modality: Modality) -> bool:
    """Whether the record can give ``modality`` back as the set-up left it: nothing fitted,
    or a saved state; and nothing adapted to a split (which happens per set-up)."""
    return not modality.adapts() and (not fits(modality) or fit_cache.can_cache(modality))


def _source_files(spec: Spec) -> list[Path] | None:
    """The local files the spec's data is read from, ``data.path`` or one per split; ``None``
    when it is read otherwise (or a file is missing: the full set-up says so)."""
    data = spec.data
    if data.dataset is not None or data.streaming:
        return None
    given = [data.path] if data.path is not None else [
        getattr(data, name) for name in src.SPLITS if getattr(data, name) is not None]
    files = []
    for value in given:
        path = _local_file(spec, value)
        if path is None:
            return None
        files.append(path)
    return files


def _local_file(spec: Spec, value: str) -> Path | None:
    """The csv, json or parquet file at ``value`` (relative to the spec's folder), or
    ``None``."""
    path = Path(value).expanduser()
    path = path if path.is_absolute() else base_dir(spec) / path
    if not path.is_file():
        return None
    try:
        fmt = src.infer_format(path) if spec.data.format == "auto" else spec.data.format
    except DataError:  # the full set-up reports it
        return None
    return path if fmt in FILE_FORMATS else None

