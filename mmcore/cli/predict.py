"""``mmcore predict RUN_DIR --input FILE [--output FILE] [--nproc N] [--trust-code]
[field=value ...]``: predictions for raw rows (``data.allow_missing=true`` lets rows lack some
modalities); with ``--nproc N`` (or under torchrun) each process predicts its share of them.

Input: ``.csv``, ``.jsonl`` (one object a line) or ``.json`` (a list of objects); relative
file paths in it resolve against its folder, or, with ``--root DIR``, only inside ``DIR`` (as
``mmcore serve --root``: no ``..``, absolute path, ``~`` or link leading out; for input that
someone else wrote). Output:
JSON lines (default, to stdout) or ``.csv`` (nested predictions flattened to
``head.field`` columns).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmcore.cli.workers import worker_argv

#: the ``field=value`` overrides predict takes (see mmcore.inference.predict.RUN_OVERRIDES)
PREDICT_OVERRIDES = ("data.allow_missing",)


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="predict with a trained run")
    p.add_argument("run_dir", help="a run folder written by `mmcore train`")
    p.add_argument("overrides", nargs="*", metavar="field=value",
                   help="data.allow_missing=true: rows lacking some modalities are masked")
    p.add_argument("--input", "-i", required=True, help="rows to predict: .csv, .jsonl or .json")
    p.add_argument("--root", help="read the files the input names only inside this folder "
                   "(paths relative to it, never leaving it, as mmcore serve --root); default: "
                   "relative to the input's folder, anywhere")
    p.add_argument("--output", "-o", help="where to write: .jsonl (default) or .csv; "
                   "default: stdout as JSON lines")
    p.add_argument("--batch-size", type=int, default=256, help="rows per forward pass")
    p.add_argument("--hide-drifting", action="store_true",
                   help="measure the input rows' drift from the training split per modality "
                   "and hide the drifting modalities from every row (docs/evaluation.md"
                   "#input-drift)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--nproc", type=int, metavar="N",
                   help="predict on N processes on this machine, each on its share of the "
                   "rows (launches torchrun; the output is in input order)")
    p.add_argument("--trust-code", action="store_true",
                   help="allow the run's spec.json to name a fusion by Python file path (such "
                   "as the spec.py copied for a fusion defined in the spec file); this "
                   "executes that file, so use it only for runs you trust")
    return p


def flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"label": {"label": 3, "probability": 0.9}}`` -> ``{"label.label": 3, ...}``;
    lists become JSON text."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, list | tuple):
            out[name] = json.dumps(value)
        else:
            out[name] = value
    return out


def write_predictions(predictions: list[dict[str, Any]], output: Path | None) -> None:
    if output is not None and output.suffix.lower() == ".csv":
        from mmcore.run.atomic import csv_text

        output.write_text(csv_text([flatten(p) for p in predictions]), encoding="utf-8")
        return
    text = "".join(json.dumps(p) + "\n" for p in predictions)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    from mmcore.data.row_files import read_rows
    from mmcore.distributed.launch import launch
    from mmcore.distributed.selection import worker_strategy
    from mmcore.errors import MmcoreError
    from mmcore.inference.predict import check_run_overrides, load
    from mmcore.paths import confine
    from mmcore.spec.roots import data_root

    # One prediction per input row: a bad row is always an error, so data.bad_rows is not
    # offered here.
    check_run_overrides(args.overrides, PREDICT_OVERRIDES)
    if getattr(args, "nproc", None) not in (None, 1):
        return launch(args.nproc, worker_argv(args))
    source = Path(args.input)
    root = getattr(args, "root", None)
    if root is not None and not Path(root).expanduser().is_dir():
        raise MmcoreError(f"--root {root}: not a folder")
    with worker_strategy() as strategy:  # one process, unless started by torchrun
        rows = read_rows(source)
        predictor = load(args.run_dir, device=args.device, trust_code=args.trust_code,
                         overrides=args.overrides, strategy=strategy)
        # Relative paths in the input resolve next to it, as they do in training data files;
        # with --root only inside that folder.
        folder = Path(root).expanduser() if root is not None else data_root(None, source)
        with confine(folder) if root is not None else contextlib.nullcontext():
            predictions = predictor.predict(rows, batch_size=args.batch_size, root=folder,
                                            hide_drifting=getattr(args, "hide_drifting", False))
        drift = predictor.last_drift
    if not strategy.is_main:  # every process has the predictions; the first one writes
        return 0
    if drift is not None and drift["drifting"]:
        scores = ", ".join(f"{m} ({drift['modalities'][m]['score']:.2f} > "
                           f"{drift['modalities'][m]['threshold']:.2f})" for m in drift["drifting"])
        print(f"warning: the inputs of {scores} drift from the training split: hidden from every "
              "row", file=sys.stderr)
    write_predictions(predictions, Path(args.output) if args.output else None)
    if args.output:
        print(f"{len(predictions)} prediction(s) written to {args.output}", file=sys.stderr)
    return 0
