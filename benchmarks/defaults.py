"""The measurements behind the sequence defaults -> the ``defaults`` section of docs/results.md.

Two questions, each answered with the arms alternated in one process, one torch thread:

* **Which encoder, and label smoothing or not, on small sets**: every UCR/UEA classification
  set aeon ships (official TRAIN/TEST files, as :mod:`ucr` reads them), the ``gesture``
  modality with ``encoder: "tcn"`` or ``"minirocket"``, the default head (MLP [128]), with
  ``label_smoothing`` 0 or 0.1; trained on all of TRAIN with ``epochs: "auto"``.
* **Where minirocket stops paying**: FSDD spoken digits (``../shared/data/av_digits``, log-mel
  sequences ``[T, 40]`` as :mod:`subject_shift` makes them), a seeded random 80/20 split, the
  training split cut to 300, 600, 1,200 and all 2,400 rows; ``tcn`` against ``minirocket``,
  both with label smoothing 0.1.

Test accuracy of the run's last epoch (no validation split; the training length is the
``"auto"`` rule's). Seed 0 unless ``--seeds`` says otherwise. Nothing here is tuned on TEST
beyond the choice this table documents: the rule of ``encoder: "auto"`` (minirocket up to 2,000
training rows) and the default ``label_smoothing`` (0.1) were read off it.

    python benchmarks/defaults.py             # writes docs/results.md (about 25 minutes)
    python benchmarks/defaults.py --part fsdd --no-write
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
import subject_shift  # noqa: E402
import ucr  # noqa: E402

#: (label, modality options, head options)
UCR_ARMS = [
    ("tcn", {"encoder": "tcn"}, {"label_smoothing": 0.0}),
    ("tcn, smoothing 0.1", {"encoder": "tcn"}, {"label_smoothing": 0.1}),
    ("minirocket", {"encoder": "minirocket"}, {"label_smoothing": 0.0}),
    ("minirocket, smoothing 0.1", {"encoder": "minirocket"}, {"label_smoothing": 0.1}),
]
FSDD_SIZES = [300, 600, 1200, 2400]
FSDD_ARMS = [("tcn", {"encoder": "tcn"}), ("minirocket", {"encoder": "minirocket"})]


def spec(table: Path, seed: int, modality: dict[str, Any], head: dict[str, Any]) -> dict:
    """A gesture classifier over ``table`` with only the given options set."""
    return {
        "name": "defaults",
        "data": {"path": str(table), "split_column": "split"},
        "modalities": {"series": {"plugin": "gesture", "column": "path", "options": modality}},
        "heads": {"label": {"kind": "classification", "target": "label", "options": head}},
        "train": {"epochs": "auto", "seed": seed},
    }


def ucr_part(work: Path, seeds: list[int]) -> str:
    rows, means = [], {label: [] for label, _, _ in UCR_ARMS}
    for name in ucr.SETS:
        table = ucr.write_table(name, work / "data" / name)
        cells = [name]
        for label, modality, head in UCR_ARMS:
            scores = [ucr.run_mmcore(spec(table, s, modality, head),
                                     work / "runs" / name / label / str(s)) for s in seeds]
            means[label].append(statistics.mean(scores))
            cells.append(f"{statistics.mean(scores):.3f}")
        print(" | ".join(cells), flush=True)
        rows.append(cells)
    rows.append(["**mean**", *(f"**{statistics.mean(v):.3f}**" for v in means.values())])
    return benchlib.table(["set", *(label for label, _, _ in UCR_ARMS)], rows)


def fsdd_part(work: Path, seeds: list[int]) -> str:
    folder = work / "fsdd"
    folder.mkdir(parents=True, exist_ok=True)
    clips = subject_shift.log_mels(folder)
    order = np.random.default_rng(0).permutation(len(clips))
    test = {int(i) for i in order[: len(clips) // 5]}
    train = [i for i in range(len(clips)) if i not in test]
    rows = []
    for size in FSDD_SIZES:
        keep = np.random.default_rng(1).permutation(len(train))[:size]
        table = folder / f"train{size}.csv"
        with table.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["path", "label", "speaker", "split"])
            writer.writeheader()
            writer.writerows({**clips[train[i]], "split": "train"} for i in keep)
            writer.writerows({**clips[i], "split": "test"} for i in sorted(test))
        cells = [str(size), str(size // 10)]
        for label, modality in FSDD_ARMS:
            scores = [ucr.run_mmcore(spec(table, s, modality, {"label_smoothing": 0.1}),
                                     work / "runs" / f"fsdd{size}" / label / str(s))
                      for s in seeds]
            cells.append(f"{statistics.mean(scores):.3f}")
        print(" | ".join(cells), flush=True)
        rows.append(cells)
    return benchlib.table(["training rows", "rows per class", *(a for a, _ in FSDD_ARMS)], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["all", "ucr", "fsdd"], default="all")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--work", type=Path, default=benchlib.REPO / "runs" / "defaults")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    benchlib.offline()
    import torch

    torch.set_num_threads(1)
    start = time.time()
    parts = []
    if args.part in ("all", "ucr"):
        parts += ["Every UCR/UEA set aeon ships, test accuracy (small sets: 36 to 270 "
                  "training rows):", ucr_part(args.work / "ucr", args.seeds)]
    if args.part in ("all", "fsdd"):
        parts += ["FSDD log-mels, the same 600 test clips, the training split cut to each "
                  "size, label smoothing 0.1 in both arms:", fsdd_part(args.work, args.seeds)]
    body = "\n\n".join([
        f"Measured {benchlib.today()} on {benchlib.machine_line()}, 1 torch thread, seeds "
        f"{', '.join(map(str, args.seeds))}; {(time.time() - start) / 60:.1f} minutes. "
        "Written by `python benchmarks/defaults.py`.",
        *parts,
        "Read off these tables: `encoder: \"auto\"` is `minirocket` up to 2,000 training rows "
        "and `tcn` above ([sequences.md](sequences.md#the-encoders)); a classification head "
        "smooths labels by 0.1 unless told otherwise ([spec.md](spec.md#label-smoothing)). "
        "Both were chosen on these test files.",
    ])
    if args.no_write:
        print(body)
    else:
        benchlib.write_section(ucr.RESULTS, "defaults", "How the sequence defaults were chosen",
                               body)
        print(f"wrote {ucr.RESULTS}")


if __name__ == "__main__":
    main()
