"""The bundle's ``manifest.json``: what the graph takes and returns, what preprocessing it
needs, and the SHA-256 of every file. Read by :mod:`mmcore.runtime`; imports no torch.

A bundle folder::

    manifest.json        this file
    model.onnx           the graph (``--format onnx``), or model.pt2 (``torch-export``)
    spec.json            the run's resolved spec, for reference
    modalities/<name>/   each modality's fitted state (tokenizer, scaler, processor files)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from mmcore.errors import CheckpointError

MANIFEST = "manifest.json"
#: bumped when the layout changes; a runtime refuses a bundle of another format
FORMAT = "mmcore-bundle-1"
GRAPH_FILES = {"onnx": "model.onnx", "torch-export": "model.pt2"}
BATCH_AXIS = "batch"


def time_axis(modality: str) -> str:
    """The name of a modality's dynamic time axis in the graph's input shapes."""
    return f"{modality}.time"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksums(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``folder`` but the manifest."""
    return {
        p.relative_to(folder).as_posix(): file_sha256(p)
        for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST
    }


def read_manifest(bundle: Path) -> dict[str, Any]:
    """The manifest of ``bundle``, after checking the format and that every file it lists
    is there with its recorded SHA-256 (and no file it does not list). Raises
    :class:`CheckpointError` naming the file."""
    path = bundle / MANIFEST
    if not path.is_file():
        raise CheckpointError(
            f"{bundle} is not an export bundle: {MANIFEST} is missing "
            "(make one with `mmcore export RUN --output DIR`)"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise CheckpointError(f"{path}: format {found!r}, expected {FORMAT!r}")
    recorded = manifest.get("files")
    if not isinstance(recorded, dict):
        raise CheckpointError(f"{path}: no 'files' table of checksums")
    actual = checksums(bundle)
    for name, digest in recorded.items():
        if name not in actual:
            raise CheckpointError(f"{bundle / name}: listed in {MANIFEST} but missing")
        if actual[name] != digest:
            raise CheckpointError(
                f"{bundle / name}: SHA-256 does not match {MANIFEST} (the file was changed "
                "or damaged after export)"
            )
    extra = sorted(set(actual) - set(recorded))
    if extra:
        raise CheckpointError(f"{bundle / extra[0]}: not listed in {MANIFEST}")
    return manifest
