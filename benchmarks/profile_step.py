"""Where a training step's time goes: a model of ``independent_loop.py`` (``--size``, tiny by
default), mmcore's ``Trainer._train_epoch`` against the hand loop with fused AdamW, on one torch
thread.

Arms, alternating in each round (CPU time per step, medians over rounds):

* ``hand``: the hand loop of ``independent_loop.py`` with fused AdamW;
* ``model``: mmcore's model and optimizer in the hand loop's ``for`` loop, on batches
  collated before timing (so ``model - hand`` is the model and the optimizer);
* ``loader``: the same, its batches drawn from mmcore's ``DataLoader`` (``loader - model``
  is the loader);
* ``trainer``: ``Trainer._train_epoch`` itself (``trainer - loader`` is the loop's
  bookkeeping).

With ``--cprofile N`` the functions of the trainer's epochs by their own time, with
``--torch N`` torch.profiler's operators: profilers slow Python down, so read the per-step
figures without them. ``--ops`` counts the torch operators each arm calls a step (counted by
torch.profiler): counts do not move with the machine's load, so they compare the arms' work
where timings are too noisy to.

    python benchmarks/profile_step.py                  # ms per step, every arm
    python benchmarks/profile_step.py --cprofile 30    # and the top 30 functions
    python benchmarks/profile_step.py --ops --rounds 1 # operators a step, where arms differ
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import benchlib
import independent_loop as il


def hand_arm(width: int) -> Callable[[], None]:
    """One epoch of the hand loop with fused AdamW."""
    import torch
    from torch.nn import functional as F

    g, p, y = il.hand_data(il.TABLE)["train"]
    torch.manual_seed(il.SEED)
    model = il.hand_model(width)
    optimizer = torch.optim.AdamW(model.parameters(), lr=il.LR, weight_decay=il.WEIGHT_DECAY,
                                  fused=True)
    model.train()

    def epoch() -> None:
        order = torch.randperm(len(y))
        for i in range(0, len(y), il.BATCH):
            idx = order[i:i + il.BATCH]
            loss = F.cross_entropy(model(g[idx], p[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), il.CLIP)
            optimizer.step()

    return epoch


def mmcore_arms(trainer: Any) -> dict[str, Callable[[], None]]:
    """``model``, ``loader`` and ``trainer`` epochs on a trainer that has run ``fit``."""
    import torch

    model, optimizer = trainer.model, trainer.optimizer
    head = next(iter(model.heads))
    params = [q for q in model.parameters() if q.requires_grad]
    held = list(trainer._loader("train", shuffle=True, epoch=1))
    epoch_no = [trainer.epoch]

    def plain(batches: Any) -> None:
        model.train()
        for batch in batches:
            loss = model.heads[head].loss(model(batch.inputs)[head], batch.targets[head])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, il.CLIP)
            optimizer.step()

    def train_epoch() -> None:
        epoch_no[0] += 1
        trainer._train_epoch(epoch_no[0])

    return {"model": lambda: plain(held),
            "loader": lambda: plain(trainer._loader("train", shuffle=True, epoch=1)),
            "trainer": train_epoch}


def build_trainer(spec: Any, registry: Any, work: Path) -> Any:
    """A trainer that has run ``fit`` (one epoch) and is ready for more ``_train_epoch``."""
    import mmcore

    trainer = mmcore.Trainer(spec, output=work / "run", overwrite=True, quiet=True,
                             plots=False, report=False, registry=registry)
    trainer.fit()
    trainer.epochs = 10**6
    return trainer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (default 7)")
    parser.add_argument("--size", choices=list(il.SIZES), default="tiny",
                        help="the model size of independent_loop.py (default tiny)")
    parser.add_argument("--cprofile", type=int, metavar="N", help="print the top N functions")
    parser.add_argument("--torch", type=int, metavar="N", help="print the top N torch ops")
    parser.add_argument("--ops", action="store_true",
                        help="print the torch operators a step of each arm calls")
    args = parser.parse_args(argv)
    benchlib.offline()
    import torch

    from mmcore.plugins import get_registry
    from mmcore.spec import validate_spec

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    registry = get_registry()
    width = il.SIZES[args.size]
    with tempfile.TemporaryDirectory(prefix="mmcore-profile-") as tmp:
        work = Path(tmp)
        table = il.mmcore_table(work)
        spec = validate_spec(il.mmcore_spec(table, work, width, 1), base_dir=work,
                             registry=registry)
        trainer = build_trainer(spec, registry, work)
        steps = len(trainer._loader("train", shuffle=True, epoch=1))
        arms = {"hand": hand_arm(width), **mmcore_arms(trainer)}
        times: dict[str, list[float]] = {a: [] for a in arms}
        for i in range(args.rounds + 1):
            for arm, run in (arms.items() if i % 2 else reversed(arms.items())):
                c0 = time.process_time()
                run()
                if i:
                    times[arm].append(1e3 * (time.process_time() - c0) / steps)
        med = {a: statistics.median(t) for a, t in times.items()}
        print(f"CPU ms per step, median of {args.rounds} rounds ({steps} steps an epoch):")
        for arm, ms in med.items():
            print(f"  {arm:8s} {ms:.3f}  (range {min(times[arm]):.3f}-{max(times[arm]):.3f})")

        def gap(arm: str, base: str) -> str:  # the median of the rounds' differences
            pairs = zip(times[arm], times[base], strict=True)
            return f"{statistics.median(a - b for a, b in pairs):+.3f}"

        ratio = statistics.median(
            h / t for h, t in zip(times["hand"], times["trainer"], strict=True))
        print(f"  per round: model - hand {gap('model', 'hand')}, loader - model "
              f"{gap('loader', 'model')}, trainer - loader {gap('trainer', 'loader')}; "
              f"trainer / hand speed {ratio:.3f}x")
        if args.cprofile:
            prof = cProfile.Profile()
            with prof:
                arms["trainer"]()
            stats = pstats.Stats(prof, stream=sys.stdout)
            stats.sort_stats("tottime").print_stats(args.cprofile)
            stats.sort_stats("cumulative").print_stats(r"mmcore", args.cprofile)
            print(f"(one epoch: divide by {steps} steps)")
        if args.torch:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU]) as torch_prof:
                arms["trainer"]()
            print(torch_prof.key_averages().table(sort_by="self_cpu_time_total",
                                                  row_limit=args.torch))
            print(f"(one epoch: divide by {steps} steps)")
        if args.ops:
            print_op_counts(arms, steps)
    return 0


def print_op_counts(arms: dict[str, Callable[[], None]], steps: int) -> None:
    """The ``aten::`` operators a step of each arm calls (one epoch counted by torch.profiler,
    divided by ``steps``): those whose counts differ between arms, then the totals."""
    from torch.profiler import ProfilerActivity, profile

    counts = {}
    for arm, run in arms.items():
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run()
        counts[arm] = {e.key: e.count / steps for e in prof.key_averages()
                       if e.key.startswith("aten::")}
    print("torch operators a step, where the arms differ:")
    print(f"  {'operator':32s}" + "".join(f"{arm:>9s}" for arm in counts))
    for op in sorted(set().union(*counts.values())):
        row = [c.get(op, 0.0) for c in counts.values()]
        if max(row) - min(row) >= 0.05:
            print(f"  {op[:32]:32s}" + "".join(f"{n:9.2f}" for n in row))
    print(f"  {'all aten:: operators':32s}"
          + "".join(f"{sum(c.values()):9.1f}" for c in counts.values()))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
