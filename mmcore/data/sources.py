"""Reading a spec's data sources into ``datasets`` tables, all from local files.

Formats: csv/tsv, json/jsonl, parquet, a folder written by ``save_to_disk`` ("disk"), and
image/audio folders with one sub-folder per label ("imagefolder"/"audiofolder", read as a
table of file paths and labels; decoding is left to the modality plugins), plus a
``datasets.Dataset``/``DatasetDict`` given as ``spec.data.dataset`` (a pandas DataFrame given
there is made into a ``Dataset`` by the spec). Nothing here touches the
network: the file builders datasets packages are used on local paths only.

``datasets`` is imported on first use (:func:`datasets_module`): with ``schema_only``,
:func:`load_path` reads csv/tsv, parquet and image/audio folders as
:class:`~mmcore.data.tables.FileTable` objects, which need only pyarrow (``mmcore validate``).

:func:`read_rows` reads a file of rows to predict on (``mmcore predict --input``), its csv cells
typed by the same reader.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from mmcore.data.tables import FileTable, open_table
from mmcore.errors import DataError
from mmcore.spec.model import Spec
from mmcore.spec.roots import base_dir

if TYPE_CHECKING:
    import datasets

SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aiff", ".aif")
FOLDER_KINDS = {"imagefolder": ("image", IMAGE_SUFFIXES), "audiofolder": ("audio", AUDIO_SUFFIXES)}
FILE_FORMATS = {
    ".csv": "csv", ".tsv": "csv",
    ".json": "json", ".jsonl": "json", ".ndjson": "json",
    ".parquet": "parquet", ".pq": "parquet",
}
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".zip")


#: the state each open :func:`progress_bars` block asks for, innermost last, while
#: ``datasets`` is not imported yet
_BARS: list[bool] = []


def datasets_module() -> ModuleType:
    """``datasets``, imported now if it was not; imported inside a :func:`progress_bars`
    block, its progress bars start as that block asks."""
    first = "datasets" not in sys.modules
    import datasets

    if first and _BARS and not _BARS[-1]:
        datasets.disable_progress_bars()
    return datasets


def split_name(name: str) -> str:
    """``"valid"`` -> ``"validation"`` etc.; other names are kept (lower-cased)."""
    key = str(name).strip().lower()
    return SPLIT_ALIASES.get(key, key)


def resolve(spec: Spec, value: str | os.PathLike, field: str) -> Path:
    """A path from the spec, resolved against the spec file's folder; it must exist."""
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = base_dir(spec) / path
    if not path.exists():
        raise DataError(
            f"{field}: {path} does not exist (relative paths resolve against the spec's folder, "
            f"{base_dir(spec)})"
        )
    return path


def cache_dir(spec: Spec) -> Path | None:
    """``data.cache_dir`` resolved against the spec's folder, or ``None`` for datasets' default."""
    if spec.data.cache_dir is None:
        return None
    path = Path(spec.data.cache_dir).expanduser()
    return path if path.is_absolute() else base_dir(spec) / path


def default_cache_root(spec: Spec) -> Path:
    """Where preprocessed tables are written: ``data.cache_dir``, else ``mmcore`` in datasets'
    cache. That is found as ``datasets`` finds it (``HF_DATASETS_CACHE``, ``HF_HOME``,
    ``XDG_CACHE_HOME``) while it is not imported, so a warm set-up need not import it."""
    explicit = cache_dir(spec)
    if explicit is not None:
        return explicit
    if "datasets" in sys.modules:  # its setting, changed or not
        return Path(sys.modules["datasets"].config.HF_DATASETS_CACHE) / "mmcore"
    home = os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    home = os.path.expanduser(os.getenv("HF_HOME", home))
    return Path(os.getenv("HF_DATASETS_CACHE", os.path.join(home, "datasets"))) / "mmcore"


def infer_format(path: Path) -> str:
    """The format of a file or folder from its suffix or layout."""
    if path.is_dir():
        if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
            return "disk"
        for file in _walk_files(path, max_depth=3):
            suffix = file.suffix.lower()
            for kind, (_, suffixes) in FOLDER_KINDS.items():
                if suffix in suffixes:
                    return kind
        raise DataError(
            f"cannot tell the format of folder {path}: it is neither a save_to_disk folder "
            "(no dataset_dict.json or state.json) nor a folder of label sub-folders holding "
            "image or audio files. Set data.format."
        )
    name = path.name.lower()
    for comp in COMPRESSION_SUFFIXES:
        if name.endswith(comp):
            name = name[: -len(comp)]
    fmt = FILE_FORMATS.get(Path(name).suffix)
    if fmt is None:
        raise DataError(
            f"cannot tell the format of {path} from its suffix; expected one of "
            f"{', '.join(sorted(FILE_FORMATS))} (optionally compressed), or set data.format"
        )
    return fmt


def _walk_files(path: Path, max_depth: int) -> Iterator[Path]:
    base = len(path.parts)
    for folder, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if len(Path(folder).parts) - base >= max_depth:
            dirs[:] = []
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(folder) / name


def load_path(
    path: Path, fmt: str, cache: Path | None, streaming: bool, schema_only: bool = False
) -> datasets.Dataset | datasets.IterableDataset | FileTable | dict[str, Any]:
    """A table (or ``{split: table}`` for a DatasetDict / split folders) from a local path.

    ``schema_only`` (not with ``streaming``): a csv/tsv or parquet file, or an image/audio
    folder, is a :class:`~mmcore.data.tables.FileTable` (its header read, a column only when
    asked for), with no ``datasets`` import and nothing written to its cache; other formats
    are read as without it."""
    if fmt == "auto":
        fmt = infer_format(path)
    schema_only = schema_only and not streaming
    if fmt in FOLDER_KINDS:
        tables = folder_tables(path, fmt, schema_only)
        if streaming:
            tables = {k: v.to_iterable_dataset() for k, v in tables.items()}
        return tables[""] if list(tables) == [""] else tables
    if schema_only and not path.is_dir():
        table = open_table(path, fmt)
        if table is not None:
            return table
    if fmt == "disk":
        return _load_from_disk(path, streaming)
    if path.is_dir():
        raise DataError(f"{path} is a folder, but data.format is {fmt!r}, which reads a file")
    return _load_file(path, fmt, cache, streaming)


def _load_from_disk(path: Path, streaming: bool) -> Any:
    """A ``save_to_disk`` folder: a table, or ``{split: table}`` for a DatasetDict."""
    datasets = datasets_module()
    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise DataError(f"cannot read {path} as a save_to_disk folder: {exc}") from None
    if isinstance(loaded, datasets.DatasetDict):
        tables = {k: undecoded(v) for k, v in loaded.items()}
        if streaming:
            tables = {k: v.to_iterable_dataset() for k, v in tables.items()}
        return tables
    loaded = undecoded(loaded)
    return loaded.to_iterable_dataset() if streaming else loaded


def _load_file(path: Path, fmt: str, cache: Path | None, streaming: bool) -> Any:
    """A csv/tsv, json or parquet file read by ``datasets`` (cached as Arrow under
    ``cache``), or streamed."""
    datasets = datasets_module()
    kwargs: dict[str, Any] = {}
    name = path.name.lower()
    if fmt == "csv" and ".tsv" in name:
        kwargs["sep"] = "\t"
    try:
        if streaming:
            return datasets.load_dataset(
                fmt, data_files=str(path), split="train", streaming=True, **kwargs
            )
        if fmt == "csv":
            return datasets.Dataset.from_csv(str(path), cache_dir=_str(cache), **kwargs)
        if fmt == "json":
            return datasets.Dataset.from_json(str(path), cache_dir=_str(cache))
        return datasets.Dataset.from_parquet(str(path), cache_dir=_str(cache))
    except (ValueError, pa.ArrowException, datasets.exceptions.DatasetGenerationError) as exc:
        cause = exc.__cause__ or exc
        raise DataError(f"cannot read {path} as {fmt}: {type(cause).__name__}: {cause}") from None


@contextlib.contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    """Hugging Face datasets' progress bars on (as they were) or off within the block;
    restored as they were found. ``datasets`` is not imported for this: imported inside the
    block by :func:`datasets_module`, it starts as the block asks."""
    if "datasets" not in sys.modules:
        _BARS.append(enabled)
        try:
            yield
        finally:
            _BARS.pop()
            if not enabled and "datasets" in sys.modules:  # as found: datasets starts with them on
                sys.modules["datasets"].enable_progress_bars()
        return
    datasets = sys.modules["datasets"]
    was_enabled = datasets.is_progress_bar_enabled()
    if not enabled:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def folder_tables(path: Path, kind: str, schema_only: bool = False) -> dict[str, Any]:
    """``{split: table}`` for an image/audio folder; the key is ``""`` without split folders.

    Layouts: ``path/<label>/<file>`` or ``path/<split>/<label>/<file>``. Each table has a
    column ``image`` (or ``audio``) with the file's path relative to ``path`` and a column
    ``label`` with the label folder's name: a ``datasets.Dataset``, or with ``schema_only``
    a :class:`~mmcore.data.tables.FileTable`.
    """
    subdirs = sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    split_dirs = [d for d in subdirs if d.name.lower() in SPLIT_ALIASES]
    if split_dirs:
        others = [d.name for d in subdirs if d not in split_dirs]
        if others:
            raise DataError(
                f"{path} mixes split folders ({', '.join(d.name for d in split_dirs)}) with other "
                f"folders ({', '.join(others)}); expected either <split>/<label>/<file> or "
                "<label>/<file>"
            )
        return {split_name(d.name): _labeled_table(d, path, kind, schema_only)
                for d in split_dirs}
    return {"": _labeled_table(path, path, kind, schema_only)}


def _labeled_table(folder: Path, root: Path, kind: str, schema_only: bool) -> Any:
    column, suffixes = FOLDER_KINDS[kind]
    files: list[str] = []
    labels: list[str] = []
    digest = hashlib.blake2b(f"{kind}:{folder.relative_to(root)}".encode(), digest_size=16)
    for file in _walk_files(folder, max_depth=64):
        if file.suffix.lower() not in suffixes:
            continue
        rel = file.relative_to(folder)
        if len(rel.parts) < 2:
            raise DataError(
                f"{file} is not inside a label folder; {kind} expects one sub-folder per label "
                f"in {folder}"
            )
        stat = file.stat()
        files.append(file.relative_to(root).as_posix())
        labels.append(rel.parts[0])
        # the size and mtime make the cache key change when a file is replaced
        digest.update(f"{files[-1]}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    if not files:
        raise DataError(
            f"no {column} files ({', '.join(suffixes)}) found in label sub-folders of {folder}"
        )
    table = pa.table({column: pa.array(files, pa.string()), "label": pa.array(labels, pa.string())})
    if schema_only:
        return FileTable.from_arrow(table)
    from datasets.table import InMemoryTable

    return datasets_module().Dataset(InMemoryTable(table), fingerprint=digest.hexdigest())


def undecoded(dataset: Any) -> Any:
    """``dataset`` with its Image/Audio/Video columns cast to ``decode=False``.

    Decoding is the modality plugins' job (datasets' own decoding needs torchvision or
    torchcodec); undecoded, such a cell is ``{"bytes": ..., "path": ...}``, which
    :func:`mmcore.io.open_binary` reads.
    """
    features = getattr(dataset, "features", None)
    if not features:
        return dataset
    for name, feature in features.items():
        if dataclasses.is_dataclass(feature) and getattr(feature, "decode", False) is True:
            dataset = dataset.cast_column(name, dataclasses.replace(feature, decode=False))
    return dataset


def column_names(dataset: Any) -> list[str]:
    """Columns of a table; for a streamed table without declared features, of its first row."""
    names = getattr(dataset, "column_names", None)
    if names is not None:
        return list(names)
    first = next(iter(dataset.take(1)), None)
    return [] if first is None else list(first)
