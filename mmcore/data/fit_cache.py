"""Fitted modality state kept next to the preprocessed tables, so a warm cache skips the fit.

A modality fitted on a training split writes its state with ``save_state`` into
``<cache root>/mmcore-fit-<key>/``; the key changes with the training table (``datasets``'
fingerprint, which covers its rows and split selection), the modality's class, plugin version,
columns, root and options. A later run with the same key calls ``load_state`` on that folder
instead of fitting again: the same files, read the same way, as a resume reads from a run
folder, so nothing in them is imported or called.

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


def load_fitted(cache_root: Path, key: str, modality: Modality) -> bool:
    """Load a cached fit into ``modality``; ``False`` (nothing changed) when there is none
    or it cannot be read, so the caller fits as usual."""
    path = folder(cache_root, key)
    if not (path / MARKER).is_file():
        return False
    try:
        modality.load_state(path)
    except Exception:  # noqa: BLE001 - a damaged cache entry only costs a fresh fit
        return False
    return True


def store_fitted(cache_root: Path, key: str, modality: Modality) -> bool:
    """Save ``modality``'s fitted state under ``key``; the folder appears whole or not at all.
    A cache that cannot be written (read-only, full) is skipped (``False``): the fit still
    stands."""
    final = folder(cache_root, key)
    tmp = final.with_name(f".tmp-{final.name}-{uuid.uuid4().hex[:8]}")
    try:
        tmp.mkdir(parents=True)
        modality.save_state(tmp)
        (tmp / MARKER).write_text(key + "\n", encoding="utf-8")
        if final.exists():
            shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    except OSError:
        return False
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return True


def copy_state(cached: Path, directory: Path) -> bool:
    """Copy the files of a cached fit (``cached``, a folder :func:`load_fitted` loaded or
    :func:`store_fitted` wrote) into ``directory``: what ``save_state`` of the modality it
    holds would write there, without encoding it again (a MiniRocket state is 30,000 floats of
    JSON). ``False`` when it cannot (the folder gone, a write failed): save the state instead."""
    try:
        shutil.copytree(cached, directory, dirs_exist_ok=True,
                        ignore=lambda where, names: [MARKER] if Path(where) == cached else [])
    except (OSError, shutil.Error):
        return False
    return True
