"""Does ``train.ema`` (an exponential moving average of the weights) help the small-data recipe,
alone and with ``train.ensemble``? -> the ``weight_average`` section of docs/results.md.

For each UCR/UEA set aeon ships (official TRAIN and TEST files, as ``benchmarks/ucr.py`` reads
them) and each seed it trains, one after another: the recipe of docs/sequences.md (the
defaults, nothing set), the recipe with ``train.ema: 0.99`` and with ``train.ema: 0.99`` plus
``train.ensemble: 5``; beside them, in the same run, aeon's MiniRocket classifier (same seed)
and 1-NN DTW. All score on TEST; nothing is tuned on TEST.

    python benchmarks/weight_average.py            # every set, seeds 0 1 2, writes docs/results.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
import ucr  # noqa: E402

DECAY = 0.99
MEMBERS = 5
ARMS = ("recipe", "ema", "ema + ensemble", "MiniRocket")


def run_arm(arm: str, name: str, table: Path, seed: int, out: Path) -> float:
    """TEST accuracy of one arm on one set and seed."""
    if arm == "MiniRocket":
        return ucr.run_minirocket(name, seed)
    overrides = {"recipe": [], "ema": [f"train.ema={DECAY}"],
                 "ema + ensemble": [f"train.ema={DECAY}", f"train.ensemble={MEMBERS}"]}[arm]
    return ucr.run_mmcore(ucr.recipe_spec(table, seed), out / arm.replace(" + ", "-"),
                          overrides)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=ucr.SETS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--work", type=Path, default=benchlib.REPO / "runs" / "weight_average")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    benchlib.offline()
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    start = time.time()
    rows: list[list[str]] = []
    means: dict[str, list[float]] = {arm: [] for arm in (*ARMS, "1-NN DTW")}
    seconds: dict[str, list[float]] = {arm: [] for arm in ARMS}
    for name in args.sets:
        table = ucr.write_table(name, args.work / "data" / name)
        scores: dict[str, list[float]] = {arm: [] for arm in ARMS}
        for seed in args.seeds:
            for arm in ARMS:  # the arms alternate within each seed
                began = time.perf_counter()
                scores[arm].append(run_arm(arm, name, table, seed,
                                           args.work / "runs" / name / str(seed)))
                seconds[arm].append(time.perf_counter() - began)
        dtw = ucr.run_dtw(name)
        row = [name]
        for arm in ARMS:
            means[arm].append(statistics.mean(scores[arm]))
            row.append(f"{means[arm][-1]:.3f} ({' / '.join(f'{v:.3f}' for v in scores[arm])})")
        means["1-NN DTW"].append(dtw)
        rows.append([*row, f"{dtw:.3f}"])
        print(" | ".join(rows[-1]), flush=True)
    rows.append(["**mean**", *(f"**{statistics.mean(v):.3f}**" for v in means.values())])
    cost = ", ".join(f"{arm} {statistics.median(v):.1f} s" for arm, v in seconds.items())
    seeds = " ".join(str(s) for s in args.seeds)
    body = "\n\n".join([
        f"Measured {benchlib.today()} on {benchlib.machine_line()}, 1 torch thread, seeds "
        f"{seeds}; {(time.time() - start) / 60:.1f} minutes. Written by "
        "`python benchmarks/weight_average.py`.",
        "TEST accuracy on every UCR/UEA set aeon ships: the small-data recipe (the defaults); "
        f"the recipe with `train.ema: {DECAY}` (the run validates, keeps and evaluates the "
        "average of its weights); with `train.ema` and "
        f"`train.ensemble: {MEMBERS}`; aeon's MiniRocket classifier with the same seed, and "
        "1-NN DTW, measured in the same run. The mean over seeds (per seed in brackets). "
        f"Median seconds per run (training and the TEST evaluation): {cost}.",
        benchlib.table(["set", "recipe", f"`ema: {DECAY}`",
                        f"`ema: {DECAY}`, `ensemble: {MEMBERS}`", "MiniRocket", "1-NN DTW"],
                       rows),
    ])
    if args.no_write:
        print(body)
    else:
        benchlib.write_section(ucr.RESULTS, "weight_average",
                               "Weight averaging of the small-data recipe", body)
        print(f"wrote {ucr.RESULTS}")


if __name__ == "__main__":
    main()
