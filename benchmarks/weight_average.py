"""Would an exponential moving average (EMA) of the weights help the small-data recipe? -> the
``weight_average`` section of docs/results.md.

Issue 28 asks to consider weight averaging (``torch.optim.swa_utils``) before building it. For
each UCR/UEA set aeon ships (official TRAIN and TEST files, as ``benchmarks/ucr.py`` reads
them) and each seed, it trains the recipe of docs/sequences.md (the defaults, nothing set)
once, with a trainer plugin (the ``on_train_batch_end`` event) keeping EMAs of the weights
after every optimizer step at two decays, and scores on TEST: the model the run ends with (its
best epoch by training loss, as always without a validation split) and each EMA loaded into
it. Nothing is tuned on TEST.

    python benchmarks/weight_average.py            # every set, seeds 0 1 2, writes docs/results.md
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

import mmcore  # noqa: E402  (imports no torch)

DECAYS = (0.99, 0.998)


class WeightAverages:
    """EMAs of a trainer's weights (one per decay), updated after every training batch."""

    def __init__(self) -> None:
        self.averages: dict[float, dict[str, Any]] = {}

    @mmcore.hookimpl
    def on_train_batch_end(self, trainer: Any, batch: int) -> None:
        import torch

        state = trainer.model.state_dict()
        if not self.averages:
            self.averages = {d: {k: v.detach().float().clone() for k, v in state.items()}
                             for d in DECAYS}
            return
        with torch.no_grad():
            for decay, average in self.averages.items():
                for key, value in state.items():
                    if value.is_floating_point():
                        average[key].mul_(decay).add_(value.detach().float(), alpha=1 - decay)
                    else:
                        average[key].copy_(value)


def run(table: Path, seed: int, out: Path) -> dict[str, float]:
    """TEST accuracy of one run's final model and of each EMA of its weights."""
    from mmcore.plugins.default import get_registry

    registry = get_registry()
    averages = WeightAverages()
    registry.pm.register(averages, name=f"weight-averages-{seed}-{time.time()}")
    try:
        trainer = mmcore.Trainer(mmcore.Spec(**ucr.recipe_spec(table, seed)), output=out,
                                 overwrite=True, quiet=True, plots=False, report=False,
                                 registry=registry)
        trainer.fit()
    finally:
        registry.pm.unregister(averages)
    figures = {"final": float(trainer.final_metrics["test"]["label.accuracy"])}
    own = trainer.model.state_dict()
    for decay, average in averages.averages.items():
        trainer.model.load_state_dict({k: v.to(own[k].dtype) for k, v in average.items()})
        figures[f"ema {decay}"] = float(trainer.evaluate("test").metrics["label.accuracy"])
    return figures


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
    start = time.time()
    arms = ["final", *(f"ema {d}" for d in DECAYS)]
    rows, means = [], {arm: [] for arm in arms}
    for name in args.sets:
        table = ucr.write_table(name, args.work / "data" / name)
        runs = [run(table, seed, args.work / "runs" / name) for seed in args.seeds]
        row = [name]
        for arm in arms:
            value = statistics.mean(r[arm] for r in runs)
            means[arm].append(value)
            row.append(f"{value:.3f} ({' / '.join(f'{r[arm]:.3f}' for r in runs)})")
        rows.append(row)
        print(" | ".join(row), flush=True)
    rows.append(["**mean**", *(f"**{statistics.mean(means[arm]):.3f}**" for arm in arms)])
    seeds = " ".join(str(s) for s in args.seeds)
    body = "\n\n".join([
        f"Measured {benchlib.today()} on {benchlib.machine_line()}, 1 torch thread, seeds "
        f"{seeds}; {(time.time() - start) / 60:.1f} minutes. Written by "
        "`python benchmarks/weight_average.py`.",
        "TEST accuracy of the small-data recipe (the defaults) on every UCR/UEA set aeon ships: "
        "the model a run ends with, against an exponential moving average of its weights "
        "(updated after every optimizer step) loaded into it at the end; the mean over seeds "
        "(per seed in brackets). An exploratory measurement: mmcore has no weight-averaging "
        "option.",
        benchlib.table(["set", "final model", *(f"EMA, decay {d}" for d in DECAYS)], rows),
    ])
    if args.no_write:
        print(body)
    else:
        benchlib.write_section(ucr.RESULTS, "weight_average",
                               "Weight averaging of the small-data recipe (exploratory)", body)
        print(f"wrote {ucr.RESULTS}")


if __name__ == "__main__":
    main()
