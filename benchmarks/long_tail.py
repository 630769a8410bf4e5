"""``class_weights: "balanced"`` on a long tail -> the ``long_tail`` section of docs/results.md.

A long tail built from real recordings: the spoken digits of ``../shared/data/av_digits`` (FSDD,
6 speakers x 10 digits x 50 takes), the class being (digit, speaker): 60 classes. The classes
are ranked at random (seed 0) and class ``r`` keeps ``max(1, round(36 / r))`` training takes
(36 singleton classes, 173 rows), 3 for validation and 10 for test, so the test split is
balanced and its accuracy is the balanced accuracy. The audio plugin's defaults,
``train.epochs: "auto"``, lr 2e-3; per seed: no class weights, ``"balanced"`` as mmcore
computes it (capped: weights at most 5x apart), and sklearn's uncapped formula given as an
explicit dict.

    python benchmarks/long_tail.py               # seeds 0 1 2, writes docs/results.md
"""

from __future__ import annotations

import argparse
import collections
import csv
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

SOURCE = benchlib.SHARED / "av_digits"
RESULTS = benchlib.REPO / "docs" / "results.md"


def write_table(path: Path) -> tuple[Path, collections.Counter]:
    with (SOURCE / "pairs.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_class: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_class.setdefault(f"{r['label']}_{r['speaker']}", []).append(r)
    rng = random.Random(0)
    classes = sorted(by_class)
    rng.shuffle(classes)
    out = []
    for rank, name in enumerate(classes, start=1):
        takes = sorted(by_class[name], key=lambda r: int(r["take"]))
        rng.shuffle(takes)
        keep = max(1, round(36 / rank))
        for i, r in enumerate(takes):
            split = ("test" if i < 10 else "validation" if i < 13
                     else "train" if i < 13 + keep else None)
            if split:
                out.append({"audio": str(SOURCE / r["audio"]), "y": name, "split": split})
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["audio", "y", "split"])
        writer.writeheader()
        writer.writerows(out)
    return path, collections.Counter(o["y"] for o in out if o["split"] == "train")


def spec(table: Path, seed: int, class_weights: Any) -> dict[str, Any]:
    options = {} if class_weights is None else {"class_weights": class_weights}
    return {
        "name": "long-tail",
        "data": {"path": str(table), "split_column": "split"},
        "modalities": {"audio": {"plugin": "audio", "column": "audio",
                                 "options": {"sample_rate": 8000}}},
        "heads": {"y": {"kind": "classification", "target": "y", "options": options}},
        "train": {"epochs": "auto", "lr": 2e-3, "seed": seed},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--work", type=Path, default=benchlib.REPO / "runs" / "long_tail")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if not SOURCE.is_dir():
        sys.exit(f"{SOURCE} not found (set MMCORE_SHARED_DATA)")
    benchlib.offline()
    import torch

    import mmcore

    torch.set_num_threads(1)
    start = time.time()
    table, counts = write_table(args.work / "table.csv")
    n = sum(counts.values())
    sklearn = {c: n / (len(counts) * k) for c, k in counts.items()}
    settings = [("no class weights", None), ('"balanced" (mmcore: capped at 5x)', "balanced"),
                ("sklearn's balanced, uncapped (a dict)", sklearn)]
    rows = []
    for label, weights in settings:
        accs = []
        for seed in args.seeds:
            trainer = mmcore.Trainer(mmcore.Spec(**spec(table, seed, weights)),
                                     output=args.work / "run", overwrite=True, quiet=True,
                                     plots=False, report=False)
            trainer.fit()
            accs.append(trainer.final_metrics["test"]["y.accuracy"])
            print(label, seed, f"{accs[-1]:.3f}", flush=True)
        rows.append([label, f"{statistics.mean(accs):.3f}", " / ".join(f"{a:.3f}" for a in accs)])
    singletons = sum(1 for k in counts.values() if k == 1)
    body = "\n\n".join([
        f"Measured {benchlib.today()} on {benchlib.machine_line()}, 1 torch thread, seeds "
        f"{', '.join(map(str, args.seeds))}; {(time.time() - start) / 60:.1f} minutes. Written "
        "by `python benchmarks/long_tail.py`.",
        f"FSDD spoken digits (`../shared/data/av_digits`), the class being (digit, speaker): "
        f"{len(counts)} classes, a constructed long tail of {n} training rows ({singletons} "
        "classes with one row, the largest with 36), 3 validation and 10 test takes per class. "
        "Test accuracy (the test split is balanced).",
        benchlib.table(["class_weights", "test accuracy", "per seed"], rows),
    ])
    if args.no_write:
        print(body)
    else:
        benchlib.write_section(RESULTS, "long_tail", "Class weights on a long tail", body)
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
