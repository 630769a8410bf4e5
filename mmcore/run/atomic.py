"""Files written whole or not at all, and read back with errors that name them: what every
file of a run folder, a checkpoint and a bundle is written with. Imports no torch.

:func:`atomic_write_bytes` (and its text and JSON forms) and :func:`atomic_copy` replace a
file by a rename, so a reader sees the old file or the new, never a part; :func:`copy_dir_atomic`
swaps a whole folder in; :func:`write_durable` writes a file inside a folder that is renamed
into place later (a checkpoint's), returning its size and SHA-256 for the folder's manifest;
:func:`csv_text` is a CSV file's text (``metrics.csv``, ``mmcore predict --output FILE.csv``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mmcore.errors import CheckpointError


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # name the file meant, not the temporary one
        if exc.errno is None:
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, json_bytes(obj))


def read_json(path: str | Path) -> Any:
    """Parsed JSON, or :class:`CheckpointError` naming the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: corrupted or unreadable JSON ({exc})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: JSON nested too deeply to be a run's file") from None

def json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2) + "\n").encode("utf-8")

def csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """``rows`` as CSV text, the columns in order of first use (a row without one leaves its
    cell empty); a non-finite float is written as its name (``nan``, ``inf``)."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()

def write_durable(path: Path, data: bytes) -> dict[str, Any]:
    """Write a file inside a private temporary folder (no rename needed: nothing reads the
    folder until it is renamed into place) and fsync its data; returns its size and SHA-256."""
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}

def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()

def atomic_copy(src: str | Path, dst: str | Path) -> None:
    """Copy a file so that ``dst`` is always either the old file or the complete new one."""
    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        _durable_copy(Path(src), tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(dst.parent)


def _durable_copy(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` (streamed) and fsync the copy's data."""
    shutil.copyfile(src, dst)
    with open(dst, "rb+") as fh:
        os.fsync(fh.fileno())


def link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` (a new name) as a hard link to ``src``, a file already on disk that is never
    written in place again; a copy whose data is fsynced where the file system cannot link
    (another device, no hard links). A link copies no bytes."""
    try:
        os.link(src, dst)
    except OSError:
        _durable_copy(src, dst)


def copy_dir_atomic(
    src: Path,
    dst: Path,
    files: Iterable[str] | None = None,
    extra_json: Mapping[str, Any] | None = None,
) -> None:
    """Copy ``src`` (or the named ``files`` in it) to ``dst``, plus ``extra_json`` documents
    (file name -> JSON value), swapping the folder in whole; files are hard links where the
    file system has them (:func:`link_or_copy`: ``src``'s files are never written again)."""
    tmp = dst.with_name(f".tmp-{dst.name}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        names = list(files) if files is not None else [p.name for p in src.iterdir() if p.is_file()]
        for name in names:  # nothing reads the folder before the rename
            link_or_copy(src / name, tmp / name)
        for name, doc in (extra_json or {}).items():
            write_durable(tmp / name, json_bytes(doc))
        fsync_dir(tmp)
        old = None
        if dst.exists():
            old = dst.with_name(f".old-{dst.name}-{uuid.uuid4().hex[:8]}")
            os.replace(dst, old)
        os.replace(tmp, dst)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    fsync_dir(dst.parent)
