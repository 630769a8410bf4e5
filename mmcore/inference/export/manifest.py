"""The bundle's ``manifest.json``: what the graph takes and returns, what preprocessing it
needs, and the SHA-256 of every file. Read by :mod:`mmcore.inference.runtime`; imports no torch.

A bundle folder::

    manifest.json        this file
    model.onnx           the graph (``--format onnx``), or model.pt2 (``torch-export``)
    spec.json            the run's resolved spec, for reference
    README.md            the model card (mmcore.run.card), checksummed like the rest
    modalities/<name>/   each modality's fitted state (tokenizer, scaler, processor files)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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


# -- the manifest's schema ---------------------------------------------------------------------
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
#: the largest manifest read (a bundle's is a few kB)
MAX_MANIFEST_BYTES = 16 * 1024 * 1024


def _relative(value: str) -> str:
    """A path inside the bundle: relative, POSIX, no ``..``, ``~``, backslash or empty part."""
    parts = value.split("/")
    if (not value or "\0" in value or "\\" in value or value.startswith(("/", "~"))
            or any(p in ("", ".", "..") for p in parts)):
        raise ValueError(f"must be a relative path inside the bundle, got {value!r}")
    return str(PurePosixPath(value))


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Graph(_Schema):
    file: str
    kind: Literal["onnx", "torch-export"]

    _file = field_validator("file")(classmethod(lambda cls, v: _relative(v)))


class _Input(_Schema):
    name: str
    modality: str
    field: Literal["values", "present", "mask", "extra"]
    key: str | None
    shape: list[int | str] = Field(min_length=1)


class _Modality(_Schema):
    plugin: str
    columns: list[str] = Field(min_length=1)
    options: dict[str, Any]
    state: str

    _state = field_validator("state")(classmethod(lambda cls, v: _relative(v)))


class _Head(_Schema):
    kind: str
    target: str
    options: dict[str, Any]
    input_size: int = Field(gt=0)


class _Parity(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    max_abs_diff: float
    batches: list[str]


class _Manifest(_Schema):
    format: str
    mmcore: str
    torch: str
    graph: _Graph
    inputs: list[_Input] = Field(min_length=1)
    outputs: list[str] = Field(min_length=1)
    modalities: dict[str, _Modality] = Field(min_length=1)
    heads: dict[str, _Head] = Field(min_length=1)
    allow_missing: bool
    plugins: dict[str, str]
    run: str
    parity: _Parity
    files: dict[str, str]

    @field_validator("files")
    @classmethod
    def _files(cls, value: dict[str, str]) -> dict[str, str]:
        for name, digest in value.items():
            _relative(name)
            if name == MANIFEST:
                raise ValueError(f"lists {MANIFEST} itself")
            if not _SHA256.match(digest):
                raise ValueError(f"{name!r}: {digest!r} is not a SHA-256 (64 hex digits)")
        return value


def manifest_problems(manifest: Any) -> list[tuple[str, str]]:
    """``(field, what is wrong)`` for each malformed field of a manifest (empty: valid).

    Besides each field's type: the format is :data:`FORMAT`, the graph file is one the
    ``files`` table lists, every input names a modality, the outputs are the heads, and the
    first input's first axis is the batch axis."""
    if not isinstance(manifest, dict):
        return [("", f"must be a JSON object, got {type(manifest).__name__}")]
    if manifest.get("format") != FORMAT:
        return [("format", f"{manifest.get('format')!r}, expected {FORMAT!r} (a bundle of "
                           "another mmcore version, or not a bundle)")]
    try:
        checked = _Manifest.model_validate(manifest)
    except ValidationError as exc:
        out = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            message = err["msg"].removeprefix("Value error, ")
            out.append((loc, message))
        return out
    problems: list[tuple[str, str]] = []
    if checked.graph.file not in checked.files:
        problems.append(("graph.file", f"{checked.graph.file!r} is not in the files table"))
    for i, item in enumerate(checked.inputs):
        if item.modality not in checked.modalities:
            problems.append((f"inputs.{i}.modality", f"{item.modality!r} is not a modality "
                             "of the manifest"))
        if (item.field == "extra") != (item.key is not None):
            problems.append((f"inputs.{i}.key", "an extra input needs a key, no other does"))
    if checked.inputs[0].shape[0] != BATCH_AXIS:
        problems.append(("inputs.0.shape", f"the first axis must be {BATCH_AXIS!r}"))
    if sorted(checked.outputs) != sorted(checked.heads) or len(set(checked.outputs)) != len(
            checked.outputs):
        problems.append(("outputs", f"{checked.outputs} are not the heads "
                                    f"{sorted(checked.heads)}"))
    return problems


def manifest_digest(data: bytes) -> str:
    """The bundle digest: the SHA-256 of ``manifest.json``'s bytes. The manifest holds the
    SHA-256 of every other file, so the digest pins the whole bundle."""
    return hashlib.sha256(data).hexdigest()


def bundle_digest(bundle: str | Path) -> str:
    """The digest of the bundle in ``bundle`` (see :func:`manifest_digest`)."""
    return manifest_digest((Path(bundle) / MANIFEST).read_bytes())


def normalize_digest(value: str) -> str:
    """A digest as given by a user (``sha256:`` prefix, upper case allowed) -> 64 hex digits,
    or :class:`CheckpointError`."""
    text = str(value).strip().lower().removeprefix("sha256:")
    if not _SHA256.match(text):
        raise CheckpointError(f"the pinned digest {value!r} is not a SHA-256 (64 hex digits)")
    return text


def read_bundle(bundle: Path, *, sha256: str | None = None) -> tuple[dict[str, Any], str]:
    """``(manifest, digest)`` of ``bundle``, after checking it whole: its SHA-256 against ``sha256``
    when given (the digest ``mmcore export`` prints), every field against the schema (one
    line per malformed field), every path in it relative and inside the bundle, no symbolic
    link in the bundle, and every file there with its recorded SHA-256 (and no file it does
    not list). Raises :class:`CheckpointError` naming the file."""
    path = bundle / MANIFEST
    pinned = normalize_digest(sha256) if sha256 is not None else None
    if not path.is_file():
        raise CheckpointError(
            f"{bundle} is not an export bundle: {MANIFEST} is missing "
            "(make one with `mmcore export RUN --output DIR`)"
        )
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise CheckpointError(f"{path}: not readable ({exc})") from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise CheckpointError(f"{path}: larger than {MAX_MANIFEST_BYTES} bytes")
    if pinned is not None and manifest_digest(data) != pinned:
        raise CheckpointError(
            f"{path}: the bundle's digest is {manifest_digest(data)}, not the pinned {pinned} "
            "(the bundle was changed, or it is another bundle)")
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{path}: not readable JSON ({exc})") from None
    problems = manifest_problems(manifest)
    if problems:
        lines = "\n".join(f"  {field or '(top level)'}: {why}" for field, why in problems)
        raise CheckpointError(f"{path}: malformed manifest:\n{lines}")
    _check_inside(bundle, manifest)
    recorded = manifest["files"]
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
    return manifest, manifest_digest(data)


def _check_inside(bundle: Path, manifest: dict[str, Any]) -> None:
    """No symbolic link anywhere in the bundle, and the graph and state paths inside it."""
    real = os.path.realpath(bundle)
    for folder, dirs, files in os.walk(bundle, followlinks=False):
        for name in dirs + files:
            if os.path.islink(os.path.join(folder, name)):
                rel = Path(folder, name).relative_to(bundle).as_posix()
                raise CheckpointError(f"{bundle / rel}: a symbolic link; a bundle holds "
                                      "regular files only")
    named = [("graph.file", manifest["graph"]["file"])] + [
        (f"modalities.{n}.state", m["state"]) for n, m in manifest["modalities"].items()]
    for field, rel in named:
        target = os.path.realpath(os.path.join(real, rel))
        if os.path.commonpath([target, real]) != real:
            raise CheckpointError(f"{bundle / MANIFEST}: {field} {rel!r} leads out of the "
                                  "bundle")
