"""``mmcore serve RUN_OR_BUNDLE [--host H] [--port P] [--root DIR | --no-files]
[--no-access-log] [--quiet]``: an HTTP endpoint (``POST /predict``, ``GET /health``,
``GET /metadata``; see docs/export.md) for an export bundle (onnxruntime) or a run folder
(the eager model).

Files named in requests are read only inside ``--root`` (see :mod:`mmcore.paths`). A model
with a modality that may read files (:attr:`mmcore.Modality.reads_files`: images, sound,
arrays in files) needs ``--root DIR`` or ``--no-files`` (every path refused: clients send
bytes)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    from mmcore.inference.serve import MAX_BYTES, MAX_ROWS

    p = sub.add_parser(name, help="serve predictions over HTTP from a bundle or a run folder")
    p.add_argument("path", metavar="RUN_OR_BUNDLE",
                   help="a bundle written by `mmcore export`, or a run folder")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    files = p.add_mutually_exclusive_group()
    files.add_argument("--root", help="the folder requests may read files from: paths in rows "
                       "are relative to it and never leave it (no '..', absolute path, '~' or "
                       "link leading out); required when a modality reads files, unless "
                       "--no-files")
    files.add_argument("--no-files", action="store_true",
                       help="read no file named in a request: clients send bytes "
                       '({"base64": ...})')
    p.add_argument("--max-rows", type=int, default=MAX_ROWS, help="rows per request at most")
    p.add_argument("--max-bytes", type=int, default=MAX_BYTES,
                   help="request body size at most, in bytes")
    p.add_argument("--threads", type=int, default=None,
                   help="onnxruntime intra-op threads (default: its own choice)")
    p.add_argument("--sha256", metavar="DIGEST",
                   help="serve the bundle only if its digest (the SHA-256 of its manifest.json, "
                   "printed by mmcore export) is DIGEST")
    p.add_argument("--no-access-log", action="store_true",
                   help="no line per request (the address and the shutdown are still logged)")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="log nothing but errors: no address, request or shutdown lines")
    p.add_argument("--trust-code", action="store_true",
                   help="allow a torch-export bundle (loading can unpickle) or a run whose "
                   "fusion is defined in its spec file; only for models you trust")
    return p


def load_target(path: str | Path, *, trust_code: bool = False,
                threads: int | None = None) -> tuple[Any, dict[str, Any]]:
    """``(predict, metadata)`` of a bundle (has ``manifest.json``) or a run folder."""
    loaded = load_model(path, trust_code=trust_code, threads=threads)
    return loaded.predict, model_metadata(loaded)


def model_metadata(loaded: Any) -> dict[str, Any]:
    """``/metadata`` of what :func:`load_model` loaded."""
    from mmcore.inference.runtime import Runtime

    return loaded.metadata() if isinstance(loaded, Runtime) else run_metadata(loaded)


def load_model(path: str | Path, *, trust_code: bool = False, threads: int | None = None,
               sha256: str | None = None) -> Any:
    """The :class:`~mmcore.inference.runtime.Runtime` of a bundle (has ``manifest.json``;
    pinned to the digest ``sha256`` when given) or the
    :class:`~mmcore.inference.predictor.Predictor` of a run folder."""
    from mmcore.errors import CheckpointError
    from mmcore.inference.export.manifest import MANIFEST

    path = Path(path)
    if (path / MANIFEST).is_file():
        from mmcore.inference import runtime

        return runtime.load(path, trust_code=trust_code, threads=threads, sha256=sha256)
    if sha256 is not None:
        raise CheckpointError(f"{path}: --sha256 pins an export bundle, and this folder has no "
                              f"{MANIFEST} (export the run with mmcore export)")
    from mmcore.inference.predict import load

    return load(path, device="cpu", trust_code=trust_code)


def file_root(root: str | None, no_files: bool, modalities: Mapping[str, Any]) -> Path | None:
    """The folder requests may read files from: ``--root`` (an existing folder), ``None``
    with ``--no-files``. Without either, a model whose modalities may read files
    (``reads_files``) is refused: the server would not know where files may come from."""
    from mmcore.errors import MmcoreError

    if root is not None:
        folder = Path(root).expanduser()
        if not folder.is_dir():
            raise MmcoreError(f"--root {root}: not a folder")
        return folder
    readers = [name for name, m in modalities.items() if getattr(m, "reads_files", True)]
    if readers and not no_files:
        raise MmcoreError(
            f"modality {readers[0]!r} may read files named in requests: give --root DIR, the "
            "only folder requests may read from, or --no-files to accept bytes only "
            '({"base64": ...})')
    return None


def run_metadata(predictor: Any) -> dict[str, Any]:
    """``/metadata`` for a run folder served with the eager model."""
    from mmcore.version import with_core_distribution

    spec = predictor.spec
    heads = {}
    for name, h in spec.heads.items():
        heads[name] = {"kind": h.kind, "target": h.target}
        if "classes" in h.options:
            heads[name]["classes"] = h.options["classes"]
    return {
        "modalities": {n: {"plugin": m.plugin_name, "columns": list(m.columns)}
                       for n, m in spec.modalities.items()},
        "heads": heads,
        "allow_missing": bool(spec.data.allow_missing),
        "graph": {"kind": "eager", "run": str(predictor.run_dir)},
        "versions": with_core_distribution(dict(spec.plugins)),
    }


def run(args: argparse.Namespace) -> int:
    from mmcore.errors import MmcoreError, PluginError
    from mmcore.inference.serve import create_app

    if args.max_rows < 1 or args.max_bytes < 1:
        raise MmcoreError("--max-rows and --max-bytes must be at least 1")
    loaded = load_model(args.path, trust_code=args.trust_code, threads=args.threads,
                        sha256=args.sha256)
    root = file_root(args.root, args.no_files, loaded.modalities)
    app = create_app(loaded.predict, model_metadata(loaded), root=root, max_rows=args.max_rows,
                     max_bytes=args.max_bytes,
                     access_log=not (args.quiet or args.no_access_log))
    try:
        import uvicorn  # noqa: F401
    except ImportError:
        raise PluginError("mmcore serve needs uvicorn: pip install 'mmcore-torch[serve]'") from None
    from mmcore.inference.serve import serve

    serve(app, args.host, args.port, quiet=args.quiet, describe=str(args.path))
    return 0
