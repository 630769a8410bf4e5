"""``mmcore plots RUN_DIR``: a run's pictures, its training curves and confusion matrices as
PNGs, drawn from what its folder keeps (``metrics.jsonl``, ``confusion.json``) at any time
after training, whatever ``Trainer(plots=...)`` said (see docs/training.md#plots)."""

from __future__ import annotations

import argparse


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="draw a run's training curves and confusion matrices (PNG "
                       "files in the run folder; needs matplotlib)")
    p.add_argument("run_dir", help="a run folder written by `mmcore train` or Trainer.fit()")
    return p


def run(args: argparse.Namespace) -> int:
    from mmcore.train.plots import draw_run

    for path in draw_run(args.run_dir):
        print(path)
    return 0
