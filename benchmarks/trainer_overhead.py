"""Trainer overhead: ``mmcore.Trainer`` against a hand-written PyTorch loop and PyTorch
Lightning's ``Trainer``, training the same model on the same batches, on the CPU.

Two models, each built by mmcore from its spec (see ``benchlib.MODELS``):

* ``av_digits``: the README demo (image + audio encoders, weighted fusion) on the bundled data;
* ``gesture``: a small LSTM on real fingertip trajectories from ``../shared/data`` (skipped
  with a note when that folder is absent), where a step is short and per-step overhead shows.

The arms (``training_arms.py``) share the model's initial weights, the cached batches, batch
size, AdamW settings, gradient clipping and epochs. What is timed:

* **training loop**: every batch's loading, forward, loss, backward, clipping and optimizer
  step; mmcore: ``Trainer._train_epoch``; plain: the epoch loop; Lightning: from
  ``on_train_epoch_start`` to ``on_train_epoch_end`` (its validation is switched off);
* **end to end** (mmcore): ``Trainer.fit()``, split into data set-up (a cache hit), the
  training loop, per-epoch validation, checkpoints and logs, the final evaluation, the rest.

The arms alternate (plain, mmcore, Lightning, control, plain, ...) after an untimed warm-up
round; "control" is the plain loop again, so control / plain shows the noise a ratio carries,
and ratios against the plain loop use the mean of the two plain runs that bracket the others.
The figures are medians over rounds, since the machine may be shared. Wall-clock samples/s are
the headline; samples per CPU second of this process (``time.process_time``; one torch thread
and no loader workers, so the work is this process's) are reported beside them because other
jobs' load moves them less. Operators per step, counted with ``torch.profiler`` over one more
epoch per arm, show what each arm does per step whatever the load.

    python benchmarks/trainer_overhead.py                       # prints the section
    python benchmarks/trainer_overhead.py --write docs/benchmarks.md

Lightning is measured when ``pytorch_lightning`` (or ``lightning``) imports beside the installed
torch; otherwise that arm is skipped with a note.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import benchlib
import training_arms as arms_lib

KEY = "trainer_overhead"
TITLE = "Trainer overhead"
#: epochs per run: short runs, many rounds (the finer the alternation, the less load drift)
EPOCHS = {"av_digits": 1, "gesture": 1}
TARGET_PLAIN = 0.97
TARGET_LIGHTNING = 1.0


def verdict(ok: bool) -> str:
    return "met" if ok else "**NOT met**"


def ratio_lines(cmp: arms_lib.Comparison) -> list[str]:
    """The mmcore/plain and mmcore/Lightning ratios, wall-clock and per CPU second, each
    against its target, and the control's ratio (the noise)."""
    med, spread = benchlib.median, benchlib.spread
    lines = []
    pairs = [("plain", "plain loop", TARGET_PLAIN), ("lightning", "Lightning", TARGET_LIGHTNING)]
    for other, label, target in pairs:
        if other not in cmp.arms:
            continue
        wall = cmp.paired_ratio("mmcore", other)
        cpu = cmp.paired_ratio("mmcore", other, "loop_cpu_s")
        lines.append(
            f"- mmcore / {label} (target >= {target:g}x): **{med(wall):.3f}x** wall-clock "
            f"({verdict(med(wall) >= target)}; rounds {spread(wall)}), **{med(cpu):.3f}x** per "
            f"CPU second ({verdict(med(cpu) >= target)}; rounds {spread(cpu)})"
        )
    if "lightning" in cmp.arms and "plain" in cmp.arms:
        wall = cmp.paired_ratio("lightning", "plain")
        cpu = cmp.paired_ratio("lightning", "plain", "loop_cpu_s")
        lines.append(f"- Lightning / plain loop: {med(wall):.3f}x wall-clock (rounds "
                     f"{spread(wall)}), {med(cpu):.3f}x per CPU second (rounds {spread(cpu)})")
    if "control" in cmp.arms:
        wall = cmp.paired_ratio("control", "plain")
        cpu = cmp.paired_ratio("control", "plain", "loop_cpu_s")
        lines.append(f"- control, the plain loop against itself: {med(wall):.3f}x wall-clock "
                     f"(rounds {spread(wall)}), {med(cpu):.3f}x per CPU second (rounds "
                     f"{spread(cpu)}): how far noise alone moves a ratio here")
    return lines


def operator_lines(counts: dict[str, dict], step_ms: float) -> list[str]:
    """Operators per step of each arm, and what mmcore's extra (or missing) operators cost
    against the plain loop, from their profiled self CPU time."""
    if "plain" not in counts or "mmcore" not in counts:
        return []
    steps = counts["plain"]["steps"]
    per_step = {arm: sum(n for n, _ in c["ops"].values()) / steps for arm, c in counts.items()}
    mine, plain = counts["mmcore"]["ops"], counts["plain"]["ops"]
    extra_us = 0.0
    more, fewer = [], []
    for key in sorted(set(mine) | set(plain)):
        m_n, m_us = mine.get(key, (0, 0.0))
        p_n, p_us = plain.get(key, (0, 0.0))
        diff = (m_n - p_n) / steps
        if abs(diff) < 0.5:
            continue
        # the cost of the differing calls at that operator's mean self time
        mean_us = (m_us / m_n) if diff > 0 else (p_us / p_n)
        extra_us += diff * mean_us
        (more if diff > 0 else fewer).append(f"{key} {diff:+.0f}")
    share = extra_us / (1000 * step_ms)
    others = ", ".join(f"{arm} {n:.0f}" for arm, n in per_step.items() if arm != "plain")
    return [
        f"- operators per step (`torch.profiler`, one epoch; load does not change them): "
        f"plain {per_step['plain']:.0f}, {others}. mmcore's extra operators cost about "
        f"{extra_us:.0f} us per step, {share:.1%} of the plain loop's {step_ms:.1f} ms CPU "
        "per step (their profiled self time, an upper bound: the profiler adds to every "
        f"call). More: {', '.join(more[:12]) or 'none'}{' ...' if len(more) > 12 else ''}. "
        f"Fewer: {', '.join(fewer) or 'none'}.",
    ]


def model_report(
    cmp: arms_lib.Comparison, title: str | None = None, counts: dict[str, dict] | None = None
) -> str:
    """One model's tables: the training loop of each arm, the ratios, mmcore's ``fit()``."""
    med = benchlib.median
    setup, train = cmp.setup, cmp.setup.train
    steps = math.ceil(setup.train_rows / train.batch_size)
    per_step_ms = 1000 * med([r["loop_s"] for r in cmp.runs["plain"]]) / (steps * cmp.epochs)
    lines = [
        f"### {title or setup.model_name}",
        "",
        f"Model: {benchlib.MODELS[setup.model_name]}. {setup.train_rows} training rows, batch "
        f"size {train.batch_size} ({steps} steps per epoch, about {per_step_ms:.1f} ms each in "
        f"the plain loop), {cmp.epochs} timed epoch(s) per run, {cmp.rounds} rounds.",
        "",
    ]
    rows = []
    for arm in cmp.arms:
        wall, cpu = cmp.rate(arm), cmp.rate(arm, "loop_cpu_s")
        rows.append([arm, f"{med(wall):.0f}", benchlib.spread(wall), f"{med(cpu):.0f}",
                     f"{med([r['loop_s'] for r in cmp.runs[arm]]):.2f}"])
    lines.append(benchlib.table(
        ["training loop", "samples/s (median)", "range over rounds", "samples per CPU second",
         "loop seconds per run"], rows,
    ))
    lines += ["", *ratio_lines(cmp)]
    if counts:
        step_cpu_ms = 1000 * med([r["loop_cpu_s"] for r in cmp.runs["plain"]]) / (
            steps * cmp.epochs)
        lines += operator_lines(counts, step_cpu_ms)
    lines.append("")
    m = cmp.runs["mmcore"]
    parts = [("data set-up (cache hit)", "fit_setup_s"), ("training loop", "fit_loop_s"),
             ("validation after each epoch", "fit_validation_s"),
             ("checkpoints, best copy, metrics files", "fit_checkpoint_s"),
             ("final evaluation (test; validation rescored)", "fit_final_s"),
             ("the rest (model, optimizer, callbacks)", "fit_other_s"),
             ("total `fit()`", "total_s")]
    total = med([r["total_s"] for r in m])
    lines.append(benchlib.table(
        ["mmcore `Trainer.fit()`", "seconds per run (median)", "share"],
        [[name, f"{med([r[k] for r in m]):.3f}", f"{med([r[k] for r in m]) / total:.0%}"]
         for name, k in parts],
    ))
    all_rows = setup.train_rows * (cmp.epochs + cmp.skip)
    e2e = med([all_rows / r["total_s"] for r in m])
    lines += [
        "",
        f"End to end, `Trainer.fit()` trains {e2e:.0f} samples/s against "
        f"{med(cmp.rate('mmcore')):.0f} in its training loop.",
    ]
    if "lightning" in cmp.arms:
        lt = med([r["total_s"] for r in cmp.runs["lightning"]])
        ll = med([r["loop_s"] for r in cmp.runs["lightning"]])
        lines[-1] += (f" Lightning's `fit()` took {lt:.2f} s per run around {ll:.2f} s of "
                      "training loop (without validation or checkpoints).")
    return "\n".join(lines)


def report(
    results: list[tuple[arms_lib.Comparison, dict[str, dict]]], *, threads: int,
    load: benchlib.Load, notes: list[str],
) -> str:
    first = results[0][0]
    arms = ", ".join(first.arms)
    lines = [
        f"Measured {benchlib.today()} on {benchlib.machine_line()}, by `python "
        f"benchmarks/trainer_overhead.py`. CPU, float32, torch threads: {threads} intra-op, 1 "
        f"inter-op; `num_workers=0`. Load while it ran: {load.sentence()}",
        "",
        "Each arm trains the same model (built by mmcore from the spec, same initial weights) "
        "on the same cached batches with the same batch size, AdamW settings (torch's fused "
        "kernel in every arm, mmcore's), gradient norm clipping (1.0) and constant learning "
        "rate. The training loop is timed: every batch's "
        "loading, forward, loss, backward, clipping and optimizer step (mmcore: "
        "`Trainer._train_epoch`; Lightning: its train-epoch hooks, validation off). The arms "
        f"alternate ({arms}, {arms}, ...) after a warm-up round; figures are medians over "
        "rounds and ratios are the median of per-round ratios (neighbours in time, so load "
        "changes largely cancel). \"control\" is the plain loop run again at the end of each "
        "round: ratios against the plain loop use the mean of the round's two plain runs, "
        "which bracket the other arms, and control / plain shows how far noise alone moves a "
        "ratio. Samples per CPU second (this process's CPU time) move less with other jobs' "
        "load than wall-clock figures.",
        "",
        *notes,
    ]
    for cmp, counts in results:
        lines += ["", model_report(cmp, counts=counts)]
    lines += [
        "",
        "The arms differ in bookkeeping only. Per step, mmcore adds the row-weighted epoch "
        "losses kept on the device (a `stack`, a multiply-add), a NaN check folded into a "
        "`torch.where` (read every 20 batches), a scheduler step, and two AdamW parameter "
        "groups (weight matrices decayed, biases and norms not); the plain loop does none of "
        "that; Lightning runs its hooks and a closure-based optimizer step. The end-to-end "
        "extras (validation every epoch, atomic checkpoints with fsync, the final evaluation "
        "of the best model on test, reusing the best epoch's validation pass) are a fixed "
        "cost per epoch and per run; "
        "their share falls as epochs get longer.",
    ]
    return "\n".join(lines)


# -- operators per step ------------------------------------------------------------------------
def operator_counts(setup: arms_lib.Setup, arms: list[str], pl: Any = None) -> dict[str, dict]:
    """Per arm, the operators ``torch.profiler`` records in one training epoch (the second
    of a run): ``{"steps": n, "ops": {name: (count, self CPU microseconds)}}``. Unlike
    timings, the counts do not depend on the machine's load, so they show exactly what an
    arm does more or less than another per step."""
    from torch.profiler import ProfilerActivity, profile

    found: dict[str, Any] = {}

    @contextlib.contextmanager
    def second_epoch(epoch: int) -> Iterator[None]:
        if epoch != 2:
            yield
            return
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            yield
        found["prof"] = prof

    runners = {
        "plain": lambda: arms_lib.run_plain(setup, 2, hook=second_epoch),
        "mmcore": lambda: arms_lib.run_mmcore(setup, 2, run=-1, hook=second_epoch),
        "lightning": lambda: arms_lib.run_lightning(setup, 2, hook=second_epoch, pl=pl),
        "control": None,
    }
    steps = len(arms_lib.train_loader(setup, 0))
    out: dict[str, dict] = {}
    for arm in arms:
        if runners.get(arm) is None:
            continue
        runners[arm]()
        events = found.pop("prof").key_averages()
        out[arm] = {"steps": steps,
                    "ops": {e.key: (e.count, e.self_cpu_time_total) for e in events}}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(benchlib.MODELS),
                        choices=list(benchlib.MODELS))
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (default 7)")
    parser.add_argument("--epochs", type=int, help=f"epochs per run (default {EPOCHS})")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--no-lightning", action="store_true", help="skip the Lightning arm")
    parser.add_argument("--write", type=Path, help="markdown file whose section to update")
    args = parser.parse_args(argv)
    benchlib.offline()

    import torch

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    notes = []
    pl, version = (None, "--no-lightning given")
    if not args.no_lightning:
        pl, version = arms_lib.import_lightning()
    if pl is None:
        notes.append(f"PyTorch Lightning was not measured ({version}). Install it beside torch "
                     "without changing torch (`pip install --no-deps pytorch-lightning "
                     "lightning-utilities torchmetrics`) to add that arm.")
        print(notes[-1], file=sys.stderr)
    else:
        notes.append(f"PyTorch Lightning {version}, installed beside torch "
                     f"{benchlib.package_version('torch')}.")
    arms = ["plain", "mmcore"] + (["lightning"] if pl is not None else []) + ["control"]
    meter = benchlib.LoadMeter()
    results = []
    with tempfile.TemporaryDirectory(prefix="mmcore-bench-") as tmp:
        for model in args.models:
            epochs = args.epochs or EPOCHS[model]
            setup = arms_lib.prepare(model, Path(tmp) / model, epochs=epochs,
                                     batch_size=args.batch_size)
            if setup is None:
                notes.append(f"The {model} model was skipped: its data "
                             f"({benchlib.SHARED}) is absent; set MMCORE_SHARED_DATA.")
                print(notes[-1], file=sys.stderr)
                continue
            cmp = arms_lib.compare(setup, arms, rounds=args.rounds, epochs=epochs, pl=pl,
                                   threads=args.threads)
            results.append((cmp, operator_counts(setup, arms, pl)))
    if not results:
        print("no model could be measured", file=sys.stderr)
        return 2
    text = report(results, threads=args.threads, load=meter.stop(), notes=notes)
    benchlib.publish(KEY, TITLE, text, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
