"""Would averaging several seeds of the small-data recipe help? -> the ``seed_ensemble`` section
of docs/results.md.

Issue 28 asks whether seed ensembles are worth a ``train.ensemble`` option: this measures it
before anything is built. For each UCR/UEA set aeon ships (official TRAIN and TEST files, as
``benchmarks/ucr.py`` reads them) it trains the recipe of docs/sequences.md (the defaults,
nothing set) with seeds 0 to K-1, one after another, and scores on TEST: each seed alone (the
mean of the first 3 and of all K), and the average of the first 3 and of all K seeds' class
probabilities (an ensemble). Different seeds differ in MiniRocket's fitted biases, the initial
weights and the shuffle order. Nothing is tuned on TEST. aeon's MiniRocket figures to compare
with are in the ``ucr`` section (measured in its own run).

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


def probabilities(name: str, table: Path, seed: int, out: Path) -> tuple[Any, Any]:
    """One seed of the recipe on ``name``: its TEST class probabilities and targets."""
    import mmcore

    trainer = mmcore.Trainer(mmcore.Spec(**ucr.recipe_spec(table, seed)), output=out,
                             overwrite=True, quiet=True, plots=False, report=False)
    trainer.fit()
    result = trainer.final_results["test"]
    return result.outputs["label"].float().softmax(-1), result.targets["label"]


def _accuracy(probs: Any, target: Any) -> float:
    return float((probs.argmax(-1) == target).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=ucr.SETS)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--work", type=Path, default=benchlib.REPO / "runs" / "seed_ensemble")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    benchlib.offline()
    import torch

    torch.set_num_threads(1)
    start = time.time()
    k, rows, means = args.members, [], {"one3": [], "ens3": [], "one": [], "ens": []}
    for name in args.sets:
        table = ucr.write_table(name, args.work / "data" / name)
        probs, target = [], None
        for seed in range(k):
            p, target = probabilities(name, table, seed, args.work / "runs" / name / str(seed))
            probs.append(p)
        single = [_accuracy(p, target) for p in probs]
        figures = {"one3": statistics.mean(single[:3]), "ens3": _accuracy(sum(probs[:3]), target),
                   "one": statistics.mean(single), "ens": _accuracy(sum(probs), target)}
        for key, value in figures.items():
            means[key].append(value)
        rows.append([name, *(f"{figures[key]:.3f}" for key in means),
                     " / ".join(f"{a:.3f}" for a in single)])
        print(" | ".join(rows[-1]), flush=True)
    rows.append(["**mean**", *(f"**{statistics.mean(v):.3f}**" for v in means.values()), ""])
    body = "\n\n".join([
        f"Measured {benchlib.today()} on {benchlib.machine_line()}, 1 torch thread, seeds 0 to "
        f"{k - 1}; {(time.time() - start) / 60:.1f} minutes. Written by "
        "`python benchmarks/seed_ensemble.py`.",
        "TEST accuracy of the small-data recipe (the defaults) on every UCR/UEA set aeon ships: "
        "one seed (the mean over seeds) against the average of the seeds' class probabilities. "
        "An exploratory measurement for a `train.ensemble` option, which mmcore does not have "
        "yet; compare with MiniRocket in the section above.",
        benchlib.table(["set", "one seed (mean of 3)", "3 seeds averaged",
                        f"one seed (mean of {k})", f"{k} seeds averaged", "per seed"], rows),
    ])
    if args.no_write:
        print(body)
    else:
        benchlib.write_section(ucr.RESULTS, "seed_ensemble",
                               "Seed ensembles of the small-data recipe (exploratory)", body)
        print(f"wrote {ucr.RESULTS}")


if __name__ == "__main__":
    main()
