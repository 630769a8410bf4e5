"""``mmcore export RUN_DIR --output DIR [--format onnx|torch-export] [--data PATH]``: an
inference bundle (see docs/export.md), checked against the eager model before it is written."""

from __future__ import annotations

import argparse


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="export a trained run as an inference bundle (ONNX or "
                       "torch.export) with its preprocessing state")
    p.add_argument("run_dir", help="a run folder written by `mmcore train`")
    p.add_argument("--output", "-o", required=True, help="the bundle folder to write (new)")
    p.add_argument("--format", choices=["onnx", "torch-export"], default="onnx",
                   help="onnx (default): dynamic batch and time axes, runs on onnxruntime; "
                   "torch-export: a torch.export program (loading it needs --trust-code)")
    p.add_argument("--data", help="a data file whose rows the graph is traced and checked on "
                   "(default: the run's test or validation split)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier bundle")
    p.add_argument("--trust-code", action="store_true",
                   help="allow the run's spec.json to name a fusion by Python file path (the "
                   "spec.py copied for a fusion defined in the spec file); this executes "
                   "that file, so use it only for runs you trust")
    return p


def run(args: argparse.Namespace) -> int:
    import json

    from mmcore.inference.export import export_run
    from mmcore.inference.export.manifest import MANIFEST, bundle_digest

    out = export_run(args.run_dir, args.output, format=args.format, data=args.data,
                     trust_code=args.trust_code, overwrite=args.overwrite)
    manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    parity = manifest["parity"]
    print(f"exported {args.run_dir} -> {out} ({manifest['graph']['file']})")
    print(f"  inputs: {', '.join(i['name'] for i in manifest['inputs'])}")
    print(f"  checked on {len(parity['batches'])} batches ({', '.join(parity['batches'])}): "
          f"largest difference from the model {parity['max_abs_diff']:.2g}")
    digest = bundle_digest(out)
    print(f"  bundle digest (SHA-256 of {MANIFEST}, which hashes every file): {digest}")
    print(f"  pin it: mmcore serve {out} --sha256 {digest}")
    return 0
