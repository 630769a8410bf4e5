"""``mmcore tune SPEC --space SPACE.py --trials N [--output DIR] [--storage URL] [--study NAME]
[--jobs J] [--trust-code] [field=value ...]``: hyperparameter search on Optuna (see
:mod:`mmcore.tune`)."""

from __future__ import annotations

import argparse

from mmcore.cli import SPEC_TRUST_HELP
from mmcore.cli.workers import typed_words, with_options


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="search hyperparameters with Optuna, each trial a run folder")
    p.add_argument("spec", help="a Python spec file (or spec.json)")
    p.add_argument("overrides", nargs="*", help="field overrides for every trial")
    p.add_argument("--space", required=True,
                   help="a Python file defining space(trial) -> {field path: value}")
    p.add_argument("--trials", type=int, required=True, help="finished trials wanted in all")
    p.add_argument("--output", "-o", default=None,
                   help="folder for the study, its trials and the best spec (default: "
                   "runs/<spec name>-tune)")
    p.add_argument("--storage", default=None,
                   help="an Optuna storage URL (default: sqlite:///OUTPUT/study.db); a "
                   "database server (postgresql+psycopg://user@host/db) lets workers on "
                   "several machines share the study")
    p.add_argument("--study", default=None, help="study name (default: the spec's name)")
    p.add_argument("--jobs", type=int, default=1,
                   help="worker processes sharing the study (default 1)")
    p.add_argument("--trust-code", action="store_true", help=SPEC_TRUST_HELP)
    return p


def _worker_argv(args: argparse.Namespace, output: str) -> list[str]:
    """The command line of each extra worker: the words the user typed, every flag as given,
    with ``--jobs 1`` (a worker starts none of its own) and the study's folder this process
    chose."""
    extra = ["--jobs", "1"]
    if args.output is None:
        extra += ["--output", output]
    return with_options(typed_words(args), extra)


def run(args: argparse.Namespace) -> int:
    import socket
    from pathlib import Path

    from mmcore.spec import load_spec
    from mmcore.tune import open_storage, run_study, start_workers

    output = args.output or (
        f"runs/{load_spec(args.spec, args.overrides, trust_code=args.trust_code).name}-tune")
    if args.jobs > 1:
        try:
            open_storage(Path(output), args.storage)  # the tables exist before workers start
        except ImportError:
            pass  # run_study says that Optuna is needed
    workers = start_workers(_worker_argv(args, output), args.jobs)
    try:
        best = run_study(args.spec, args.space, args.trials, output, storage=args.storage,
                         study_name=args.study, overrides=args.overrides,
                         trust_code=args.trust_code)
    finally:
        codes = [w.wait() for w in workers]
    print(f"best trial {best['trial']}: {best['monitor']} = {best['value']:.4f} "
          f"({best['direction']}) with {' '.join(best['overrides']) or 'the spec as it is'}")
    elsewhere = best.get("host") not in (None, socket.gethostname())
    print(f"trials: {best['trials']}; run folder {best['run']}"
          + (f" on {best['host']}" if elsewhere else ""))
    print(f"wrote {output}/trials.csv, best.json and best_spec.json")
    return 0 if all(c == 0 for c in codes) else 1
