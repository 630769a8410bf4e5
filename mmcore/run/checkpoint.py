"""Checkpoints: safetensors only, nothing ever unpickled, every file written atomically
(:mod:`mmcore.run.atomic`, whose functions are importable from here too).

A checkpoint is a folder ``checkpoints/epoch-NNNN/`` (written at the end of epoch NNNN) or
``checkpoints/epoch-NNNN-batch-BBBBBB/`` (written inside epoch NNNN after BBBBBB of its
batches, with ``train.checkpoint_every``) holding

``model.safetensors``
    the model's weights;
``trainer_state.safetensors`` / ``trainer_state.json``
    optimizer, scheduler, scaler and RNG states split by :mod:`mmcore.run.state` into
    tensors and a JSON skeleton, plus epoch, step, best metric and early-stopping counter;
``COMPLETE``
    written last: sizes and SHA-256 of the files above.

The folder is built under a temporary name and renamed into place, then ``checkpoints/latest``
(a one-line file naming it) is replaced atomically. A folder without ``COMPLETE`` is ignored by
resume; a file whose checksum does not match raises :class:`CheckpointError` naming it.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor, nn

from mmcore.errors import CheckpointError
from mmcore.run.atomic import (  # noqa: F401 - the atomic writes are re-exported from here too
    atomic_copy,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    copy_dir_atomic,
    fsync_dir,
    json_bytes,
    read_json,
    sha256,
    write_durable,
)
from mmcore.run.state import flatten, unflatten

CHECKPOINTS = "checkpoints"
LATEST = "latest"
COMPLETE = "COMPLETE"
MODEL_FILE = "model.safetensors"
STATE_TENSORS = "trainer_state.safetensors"
STATE_JSON = "trainer_state.json"
BEST = "best"
BEST_INFO = "best.json"
#: complete checkpoints kept (older ones are deleted after a new one is written)
KEEP_LAST = 2
STATE_FORMAT = 1


# -- tensors -----------------------------------------------------------------------------------
def _safetensors_bytes(tensors: Mapping[str, Tensor]) -> bytes:
    """``tensors`` serialized. safetensors reads each tensor's bytes itself: a copy is made
    first only of a tensor it cannot read as it is (on another device, not contiguous, a
    lazy conjugate or negation, or sharing its storage with one before it: tied weights are
    stored twice), not of the CPU copies a checkpoint's tensors already are."""
    storages: set[int] = set()
    plain = {}
    for name, tensor in tensors.items():
        tensor = tensor.detach()
        storage = tensor.untyped_storage().data_ptr()
        if (tensor.device.type != "cpu" or not tensor.is_contiguous() or tensor.is_conj()
                or tensor.is_neg() or storage in storages):
            tensor = tensor.to("cpu", copy=True).contiguous()
        else:
            storages.add(storage)
        plain[name] = tensor
    return st_save(plain)


def save_tensors(path: str | Path, tensors: Mapping[str, Tensor]) -> None:
    """Atomically write tensors (from any device) as a safetensors file."""
    atomic_write_bytes(path, _safetensors_bytes(tensors))


def load_tensors(path: str | Path) -> dict[str, Tensor]:
    """A safetensors file's tensors (on CPU), or :class:`CheckpointError` naming the file."""
    path = Path(path)
    if path.exists() and not path.is_file():  # a device (/dev/zero), a fifo, a folder
        raise CheckpointError(f"{path}: not a regular file, so not a safetensors file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc})") from None
    except MemoryError:
        raise CheckpointError(f"{path}: too large to load into memory") from None
    try:
        return st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: corrupted or not a safetensors file ({exc})") from None


def model_tensors(model: nn.Module) -> dict[str, Tensor]:
    """The model's state dict as independent CPU tensors (tied weights are stored twice)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a ``model.safetensors`` into ``model`` (strict); mismatches name the file."""
    tensors = load_tensors(path)
    apply_weights(model, tensors, path)


def apply_weights(model: nn.Module, tensors: Mapping[str, Tensor], path: str | Path) -> None:
    """Load ``tensors`` into ``model`` after :func:`check_weights`."""
    check_weights(model, tensors, path)
    with torch.no_grad():
        model.load_state_dict(dict(tensors), strict=True)


def check_weights(model: nn.Module, tensors: Mapping[str, Tensor], path: str | Path) -> None:
    """:class:`CheckpointError` naming ``path`` unless ``tensors`` has exactly the names and
    shapes of ``model``'s state dict."""
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    wrong = [
        f"{k} {tuple(tensors[k].shape)} != {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(tensors))
        if tensors[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(
                f"unexpected {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}"
            )
        if wrong:
            parts.append(f"shape mismatch {', '.join(wrong[:5])}")
        raise CheckpointError(
            f"{path}: the weights do not fit the model built from the run's spec "
            f"({'; '.join(parts)})"
        )


# -- checkpoint folders ------------------------------------------------------------------------
@dataclass
class Checkpoint:
    """A complete checkpoint read back: the model's tensors and the trainer state."""

    path: Path
    epoch: int
    model: dict[str, Tensor]
    state: dict[str, Any]


#: ``epoch-NNNN`` or ``epoch-NNNN-batch-BBBBBB``
NAME = re.compile(r"epoch-(\d+)(?:-batch-(\d+))?")


def checkpoint_name(epoch: int, batch: int | None = None) -> str:
    """``epoch-NNNN`` at the end of ``epoch``; ``epoch-NNNN-batch-BBBBBB`` inside it, after
    ``batch`` of its batches."""
    return f"epoch-{epoch:04d}" if batch is None else f"epoch-{epoch:04d}-batch-{batch:06d}"


def _order(path: Path) -> tuple[int, float] | None:
    """Where a checkpoint folder stands in training (``None``: not a checkpoint's name)."""
    found = NAME.fullmatch(path.name)
    if found is None:
        return None
    batch = found.group(2)
    return int(found.group(1)), math.inf if batch is None else int(batch)


def write_checkpoint(
    root: str | Path, epoch: int, model: Mapping[str, Tensor], state: Mapping[str, Any],
    batch: int | None = None,
) -> Path:
    """Write ``root/epoch-NNNN`` (``root/epoch-NNNN-batch-BBBBBB`` with ``batch``: inside
    ``epoch``) atomically and point ``root/latest`` at it.

    ``state`` is any nesting of dicts, lists, tuples, tensors, numpy arrays and JSON scalars.
    Returns the checkpoint folder. The files are written plainly inside a private temporary
    folder (each one's data fsynced, checksums taken from the bytes in memory), the folder is
    fsynced once and renamed into place, then ``latest`` is replaced atomically; the final
    fsync of ``root`` makes both renames durable.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = checkpoint_name(epoch, batch)
    final = root / name
    tmp = root / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        tensors: dict[str, Tensor] = {}
        skeleton = flatten(dict(state), "state", tensors)
        contents = {
            MODEL_FILE: _safetensors_bytes(model),
            STATE_TENSORS: _safetensors_bytes(tensors),
            STATE_JSON: json_bytes({"format": STATE_FORMAT, "state": skeleton}),
        }
        files = {f: write_durable(tmp / f, data) for f, data in contents.items()}
        write_durable(tmp / COMPLETE, json_bytes({"epoch": epoch, "batch": batch,
                                                    "files": files}))
        fsync_dir(tmp)
        if final.exists():  # re-running an epoch after a resume replaces its old checkpoint
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    atomic_write_text(root / LATEST, name + "\n")  # ends with an fsync of root
    return final


def is_complete(path: Path) -> bool:
    return (path / COMPLETE).is_file()


def complete_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoint folders under ``root``, oldest first (a mid-epoch checkpoint
    after the end of the epoch before and before the end of its own)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir()
             if p.is_dir() and _order(p) is not None and is_complete(p)]
    return sorted(found, key=lambda p: _order(p))  # type: ignore[arg-type,return-value]


def latest_checkpoint(root: str | Path) -> Path | None:
    """The checkpoint ``root/latest`` names if it is complete, else the newest complete one."""
    root = Path(root)
    pointer = root / LATEST
    if pointer.is_file():
        candidate = root / pointer.read_text(encoding="utf-8").strip()
        if candidate.parent == root and candidate.is_dir() and is_complete(candidate):
            return candidate
    found = complete_checkpoints(root)
    return found[-1] if found else None


def verify_checkpoint(path: Path) -> dict[str, Any]:
    """Check every file against ``COMPLETE``; :class:`CheckpointError` names a bad file."""
    marker = read_json(path / COMPLETE)
    for name, info in marker.get("files", {}).items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"{file}: missing from a checkpoint marked complete")
        if file.stat().st_size != info["size"] or sha256(file) != info["sha256"]:
            raise CheckpointError(
                f"{file}: corrupted (its size or checksum differs from what {path / COMPLETE} "
                "recorded when it was written)"
            )
    return marker


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read and verify a complete checkpoint folder."""
    path = Path(path)
    if not is_complete(path):
        raise CheckpointError(f"{path}: not a complete checkpoint (no {COMPLETE} marker)")
    marker = verify_checkpoint(path)
    model = load_tensors(path / MODEL_FILE)
    tensors = load_tensors(path / STATE_TENSORS)
    doc = read_json(path / STATE_JSON)
    if doc.get("format") != STATE_FORMAT:
        raise CheckpointError(
            f"{path / STATE_JSON}: trainer state format {doc.get('format')!r}, "
            f"this mmcore reads format {STATE_FORMAT}"
        )
    try:
        state = unflatten(doc["state"], tensors)
    except KeyError as exc:
        raise CheckpointError(f"{path / STATE_TENSORS}: tensor {exc} is missing") from None
    return Checkpoint(path, int(marker["epoch"]), model, state)


def prune_checkpoints(root: str | Path, keep: int = KEEP_LAST) -> list[Path]:
    """Delete all but the newest ``keep`` complete end-of-epoch checkpoints, every mid-epoch
    checkpoint but the newest one after them, and any leftover temp or incomplete folders.
    Returns what was deleted."""
    root = Path(root)
    if not root.is_dir():
        return []
    complete = complete_checkpoints(root)
    ends = [p for p in complete if NAME.fullmatch(p.name).group(2) is None]  # type: ignore[union-attr]
    doomed = ends[: max(len(ends) - keep, 0)]
    newest_end = _order(ends[-1]) if ends else None
    inside = [p for p in complete if p not in ends]
    doomed += [p for p in inside[:-1]]
    doomed += [p for p in inside[-1:] if newest_end is not None
               and (order := _order(p)) is not None and order < newest_end]
    doomed += [
        p for p in root.iterdir()
        if p.is_dir() and (p.name.startswith(".tmp-") or not is_complete(p))
    ]
    for p in doomed:
        shutil.rmtree(p, ignore_errors=True)
    return doomed
