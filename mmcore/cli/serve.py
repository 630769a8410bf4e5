"""``mmcore serve RUN_OR_BUNDLE [--host H] [--port P] [--root DIR]``: an HTTP endpoint
(``POST /predict``, ``GET /health``, ``GET /metadata``; see docs/export.md) for an export
bundle (onnxruntime) or a run folder (the eager model)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    from mmcore.serve import MAX_BYTES, MAX_ROWS

    p = sub.add_parser(name, help="serve predictions over HTTP from a bundle or a run folder")
    p.add_argument("path", metavar="RUN_OR_BUNDLE",
                   help="a bundle written by `mmcore export`, or a run folder")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--root", help="folder that relative file paths in requests resolve "
                   "against (default: the working directory)")
    p.add_argument("--max-rows", type=int, default=MAX_ROWS, help="rows per request at most")
    p.add_argument("--max-bytes", type=int, default=MAX_BYTES,
                   help="request body size at most, in bytes")
    p.add_argument("--threads", type=int, default=None,
                   help="onnxruntime intra-op threads (default: its own choice)")
    p.add_argument("--trust-code", action="store_true",
                   help="allow a torch-export bundle (loading can unpickle) or a run whose "
                   "fusion is defined in its spec file; only for models you trust")
    return p


def load_target(path: str | Path, *, trust_code: bool = False,
                threads: int | None = None) -> tuple[Any, dict[str, Any]]:
    """``(predict, metadata)`` of a bundle (has ``manifest.json``) or a run folder."""
    from mmcore.export.manifest import MANIFEST

    path = Path(path)
    if (path / MANIFEST).is_file():
        from mmcore import runtime

        loaded = runtime.load(path, trust_code=trust_code, threads=threads)
        return loaded.predict, loaded.metadata()
    from mmcore.predict import load

    predictor = load(path, device="cpu", trust_code=trust_code)
    return predictor.predict, run_metadata(predictor)


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
    from mmcore.errors import PluginError
    from mmcore.serve import create_app

    predict, metadata = load_target(args.path, trust_code=args.trust_code, threads=args.threads)
    app = create_app(predict, metadata, root=args.root, max_rows=args.max_rows,
                     max_bytes=args.max_bytes)
    try:
        import uvicorn
    except ImportError:
        raise PluginError("mmcore serve needs uvicorn: pip install 'mmcore-torch[serve]'") from None
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
