"""Where relative paths resolve: the spec's folder (:func:`base_dir`) for paths in the spec,
and the data root (:func:`data_root`) for file paths inside the data's cells.

This is the one home of that rule: building the modalities, reading each split, recording a
set-up, reading a file to evaluate and ``mmcore predict --input`` all ask :func:`data_root`;
the run folder's ``spec.json`` makes the spec's paths absolute against :func:`base_dir`. It
imports neither ``datasets`` nor torch (``mmcore validate`` uses it)."""

from __future__ import annotations

import os
from pathlib import Path

from mmcore.spec.model import Spec


def base_dir(spec: Spec) -> Path:
    """The folder paths in ``spec`` resolve against: the spec file's (the run folder for a
    loaded run, whose ``spec.json`` keeps its data paths absolute), else the working
    directory. Always absolute: a path resolved against it is final, and resolving it again
    (:func:`data_root` given a table already resolved) leaves it as it is."""
    return Path(spec.base_dir).absolute() if spec.base_dir else Path.cwd()


def data_root(spec: Spec | None, table: str | os.PathLike[str] | None = None) -> Path | None:
    """The folder that relative file paths in the cells of a data table resolve against.

    - ``spec.data.root``, when set, wins (relative to the spec's folder, ``~`` expanded);
    - else the table's folder: ``table`` itself when it is a folder (a ``save_to_disk`` or
      image folder), else the folder holding it. A relative ``table`` is taken relative to
      the spec's folder (to the working directory without a spec);
    - without ``table``, the spec's training table (``data.path``, else ``data.train``):
      the folder the modalities are fitted in;
    - data given as a ``datasets`` object (no table): the spec's folder, ``None`` when the
      spec has none.

    ``spec=None`` asks about a table on its own (a file to evaluate or predict on): its
    folder, whatever a spec's ``data.root`` says."""
    if spec is not None and spec.data.root:
        root = Path(spec.data.root).expanduser()
        return root if root.is_absolute() else base_dir(spec) / root
    if table is None and spec is not None:
        table = spec.data.path if spec.data.path is not None else spec.data.train
        if table is None:  # a datasets object: its paths are relative to the spec
            return Path(spec.base_dir) if spec.base_dir else None
    if table is None:
        return None
    path = Path(table).expanduser()
    if not path.is_absolute():
        path = (base_dir(spec) if spec is not None else Path.cwd()) / path
    return path if path.is_dir() else path.parent
