"""Fitted modality state kept next to the preprocessed tables, so a warm cache skips the fit.

A modality fitted on a training split writes its state with ``save_state`` into
``<cache root>/mmcore-fit-<key>/``; the key changes with the training table (``datasets``'
fingerprint, which covers its rows and split selection), the modality's class, plugin version,
columns, root and options. A later run with the same key calls ``load_state`` on that folder
instead of fitting again: the same files, read the same way, as a resume reads from a run
folder, so nothing in them is imported or called. A new run folder gets a copy of those files
(:func:`copy_state`) rather than a second ``save_state``.

Only modalities that override ``save_state`` and ``load_state`` take part: a modality whose
fitted state lives nowhere but in memory is always fitted. A modality class can also opt out
with ``cache_fit = False`` (when ``fit`` does more than fill its saved state, e.g. checks that
files the training run needs are there).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from mmcore.data.storage import FORMAT_VERSION
from mmcore.modality import Modality

#: written last into a cached folder; a folder without it is ignored (and replaced)
MARKER = "FITTED"


def can_cache(modality: Modality) -> bool:
    """Whether ``modality`` saves and loads its fitted state (so a cached copy is complete)."""
    cls = type(modality)
    if not getattr(cls, "cache_fit", True):
        return False
    return cls.save_state is not Modality.save_state and cls.load_state is not Modality.load_state


def fit_key(
    table_fingerprint: str,
    modality: Modality,
    columns: list[str],
    version: str | None,
) -> str:
    """The cache key of one modality's fit on one training table (unfitted ``modality``)."""
    cls = type(modality)
    state = {
        "format": FORMAT_VERSION,
        "table": table_fingerprint,
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "version": version,
        "columns": columns,
        "context": list(modality.context_columns()),
        "root": str(Path(modality.root).resolve()) if modality.root is not None else None,
        "options": modality.fingerprint(),
    }
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:32]


def folder(cache_root: Path, key: str) -> Path:
    return cache_root / f"mmcore-fit-{key}"


@dataclass(frozen=True)
class CachedFit:
    """A fit in the cache: its ``folder`` and the text of its :data:`MARKER` when it was
    loaded or stored (the key and a nonce of that store), which tells whether the folder still
    holds that fit."""

    folder: Path
    marker: str

    def current(self) -> bool:
        """Whether the folder still holds this fit (not replaced by another process's)."""
        return _marker(self.folder) == self.marker


def _marker(path: Path) -> str | None:
    try:
        return (path / MARKER).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def load_fitted(cache_root: Path, key: str, modality: Modality) -> CachedFit | None:
    """Load a cached fit into ``modality``; ``None`` (nothing to trust) when there is none, it
    cannot be read, or another process replaced it while it was read, so the caller fits as
    usual."""
    path = folder(cache_root, key)
    marker = _marker(path)
    if marker is None:
        return None
    try:
        modality.load_state(path)
    except Exception:  # noqa: BLE001 - a damaged cache entry only costs a fresh fit
        return None
    cached = CachedFit(path, marker)
    return cached if cached.current() else None


def store_fitted(cache_root: Path, key: str, modality: Modality) -> CachedFit | None:
    """Save ``modality``'s fitted state under ``key``; the folder appears whole or not at all
    (an older one is renamed aside before the new one is renamed in, then removed). A cache
    that cannot be written (read-only, full) is skipped (``None``): the fit still stands."""
    final = folder(cache_root, key)
    nonce = uuid.uuid4().hex[:8]
    tmp = final.with_name(f".tmp-{final.name}-{nonce}")
    old = final.with_name(f".old-{final.name}-{nonce}")
    marker = f"{key}\n{nonce}\n"
    try:
        tmp.mkdir(parents=True)
        modality.save_state(tmp)
        (tmp / MARKER).write_text(marker, encoding="utf-8")
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
    except OSError:
        return None
    finally:
        for leftover in (tmp, old):
            if leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)
    return CachedFit(final, marker)


def copy_state(cached: CachedFit, directory: Path) -> bool:
    """Copy the files of ``cached`` (but its marker) into ``directory``, an empty folder: what
    ``save_state`` of the modality it was loaded into or stored from would write there,
    without encoding it again (a MiniRocket state is 30,000 floats of JSON). File contents
    only, not the cache's permissions. ``False``, with ``directory`` left empty, when it cannot
    (the folder gone, or replaced by another process's fit meanwhile; a write failed): save
    the state instead."""
    try:
        if cached.current():
            for path in sorted(cached.folder.rglob("*")):
                target = directory / path.relative_to(cached.folder)
                if path.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                elif path.parent != cached.folder or path.name != MARKER:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, target)
            if cached.current():
                return True
    except OSError:
        pass
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    return False
