"""Does averaging several models of the small-data recipe help, and does ``train.ensemble``
give it? -> the ``seed_ensemble`` section of docs/results.md.

For each UCR/UEA set aeon ships (official TRAIN and TEST files, as ``benchmarks/ucr.py`` reads
them) it trains the recipe of docs/sequences.md (the defaults, nothing set) with seeds 0 to
K-1, one run after another, and scores on TEST: each seed alone (the mean of the first 3 and of
all K), and the average of the first 3 and of all K runs' class probabilities (separate runs
averaged by hand). Then the same recipe with ``train.ensemble: K`` (seeds 0 to 2): one run whose
members differ in initial weights and order of the training split (MiniRocket's fitted
biases are the same in every run and member). Nothing is tuned on TEST. aeon's MiniRocket
figures to compare with are in the ``ucr`` section (measured in its own run).

    python benchmarks/seed_ensemble.py            # every set, K = 5, writes docs/results.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
import ucr  # noqa: E402


def probabilities(table: Path, seed: int, out: Path, ensemble: int = 1) -> tuple[Any, Any]:
    """One run of the recipe on ``table`` (``train.ensemble``: ``ensemble``): its TEST class
    probabilities and targets."""
    import mmcore

    spec = ucr.recipe_spec(table, seed)
    spec["train"]["ensemble"] = ensemble
    trainer = mmcore.Trainer(mmcore.Spec(**spec), output=out, overwrite=True, quiet=True,
                             plots=False, report=False)
    trainer.fit()
    result = trainer.final_results["test"]
    return result.outputs["label"].float().softmax(-1), result.targets["label"]


def _accuracy(probs: Any, target: Any) -> float:
    return float((probs.argmax(-1) == target).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=ucr.SETS)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--ensemble-seeds", type=int, default=3,
                        help="seeds of the train.ensemble arm (its mean is reported)")
    parser.add_argument("--work", type=Path, default=benchlib.REPO / "runs" / "seed_ensemble")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    benchlib.offline()
    import torch

    torch.set_num_threads(1)
    start = time.time()
    k = args.members
    rows: list[list[str]] = []
    means: dict[str, list[float]] = {key: [] for key in ("one3", "ens3", "one", "ens", "in")}
    seconds: dict[str, list[float]] = {"one": [], "in": []}
    for name in args.sets:
        table = ucr.write_table(name, args.work / "data" / name)
        probs, target = [], None
        for seed in range(k):
            began = time.perf_counter()
            p, target = probabilities(table, seed, args.work / "runs" / name / str(seed))
            seconds["one"].append(time.perf_counter() - began)
            probs.append(p)
        inside = []
        for seed in range(args.ensemble_seeds):
            began = time.perf_counter()
            p, _ = probabilities(table, seed, args.work / "runs" / name / f"ensemble-{seed}",
                                 ensemble=k)
            seconds["in"].append(time.perf_counter() - began)
            inside.append(_accuracy(p, target))
        single = [_accuracy(p, target) for p in probs]
        figures = {"one3": statistics.mean(single[:3]), "ens3": _accuracy(sum(probs[:3]), target),
                   "one": statistics.mean(single), "ens": _accuracy(sum(probs), target),
                   "in": statistics.mean(inside)}
        for key, value in figures.items():
            means[key].append(value)
        rows.append([name, *(f"{figures[key]:.3f}" for key in means),
                     " / ".join(f"{a:.3f}" for a in single),
                     " / ".join(f"{a:.3f}" for a in inside)])
        print(" | ".join(rows[-1]), flush=True)
    rows.append(["**mean**", *(f"**{statistics.mean(v):.3f}**" for v in means.values()), "",
                 ""])
    cost = (f"one model {statistics.median(seconds['one']):.0f} s, `train.ensemble: {k}` "
            f"{statistics.median(seconds['in']):.0f} s")
    body = "\n\n".join([
        f"Measured {benchlib.today()} on {benchlib.machine_line()}, 1 torch thread, seeds 0 to "
        f"{k - 1}; {(time.time() - start) / 60:.1f} minutes. Written by "
        "`python benchmarks/seed_ensemble.py`.",
        "TEST accuracy of the small-data recipe (the defaults) on every UCR/UEA set aeon ships: "
        "one seed (the mean over seeds); the average of separate runs' class probabilities "
        f"(seeds 0 to 2, 0 to {k - 1}: one draw each); and `train.ensemble: {k}`, whose "
        "members are trained together in one run and averaged the same way (the mean over "
        f"seeds 0 to {args.ensemble_seeds - 1}). Median seconds per run (training and the TEST "
        f"evaluation): {cost}. Compare with MiniRocket in the section above.",
        benchlib.table(["set", "one seed (mean of 3)", "3 seeds averaged",
                        f"one seed (mean of {k})", f"{k} seeds averaged",
                        f"`train.ensemble: {k}` (mean of {args.ensemble_seeds})", "per seed",
                        "`train.ensemble` per seed"], rows),
    ])
    if args.no_write:
        print(body)
    else:
        benchlib.write_section(ucr.RESULTS, "seed_ensemble",
                               "Ensembles of the small-data recipe", body)
        print(f"wrote {ucr.RESULTS}")


if __name__ == "__main__":
    main()
