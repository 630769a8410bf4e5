"""Data pipeline against training step rate: can the loader feed the model?

For each model of ``benchlib.MODELS`` (the av_digits demo on bundled data; the gesture LSTM on
``../shared/data``, skipped with a note when absent), on the CPU:

* **pipeline**: batches per second of ``dm.loader("train", ...)`` alone (shuffled, the spec's
  batch size, the default ``num_workers=0``): one Arrow read per batch from the cache, decoding,
  ``modality.collate``, targets;
* **step**: training steps per second of the model on batches already in memory (forward,
  loss, backward, gradient clipping, AdamW step), so no data work is counted.

The two alternate, one epoch each, and the figures are medians. The target is a pipeline at
least 5x faster than the step, so that loading costs a training loop at most about a sixth
of its time with ``num_workers=0`` (and nothing once workers load ahead).

    python benchmarks/pipeline_vs_step.py [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import benchlib
import training_arms as arms_lib

KEY = "pipeline_vs_step"
TITLE = "Data pipeline against training step"
TARGET = 5.0


def measure(setup: arms_lib.Setup, rounds: int) -> dict[str, list[float]]:
    """Per round: pipeline batches/s and training steps/s (wall and per CPU second)."""
    model = arms_lib.build(setup)
    optimizer = arms_lib.plain_optimizer(setup, model)
    model.train()
    batches = list(arms_lib.train_loader(setup, 0))
    for batch in batches[:3]:  # warm-up: allocator, first-call paths
        arms_lib.plain_step(setup, model, optimizer, batch)
    out: dict[str, list[float]] = {"pipe": [], "pipe_cpu": [], "step": [], "step_cpu": []}
    for r in range(1, rounds + 1):
        start, cpu = time.perf_counter(), time.process_time()
        n = sum(1 for _ in arms_lib.train_loader(setup, r))
        out["pipe"].append(n / (time.perf_counter() - start))
        out["pipe_cpu"].append(n / (time.process_time() - cpu))
        start, cpu = time.perf_counter(), time.process_time()
        for batch in batches:
            arms_lib.plain_step(setup, model, optimizer, batch)
        arms_lib.synchronize(setup.device)
        out["step"].append(len(batches) / (time.perf_counter() - start))
        out["step_cpu"].append(len(batches) / (time.process_time() - cpu))
        print(f"{setup.model_name} round {r}: pipeline {out['pipe'][-1]:.0f} batches/s, "
              f"step {out['step'][-1]:.1f} steps/s; per CPU second: {out['pipe_cpu'][-1]:.0f} "
              f"and {out['step_cpu'][-1]:.1f}", file=sys.stderr)
    out.update(breakdown(setup, rounds))
    return out


def breakdown(setup: arms_lib.Setup, rounds: int) -> dict[str, list[float]]:
    """CPU milliseconds per batch of the pipeline's two parts, per round: reading a batch's
    rows from the Arrow cache (``dataset.__getitems__``) and collating them (decoding the
    arrays, ``modality.collate``, targets). The rest of a loader's time per batch is the
    ``DataLoader``'s own (sampler, fetch)."""
    out: dict[str, list[float]] = {"read_ms": [], "collate_ms": []}
    for r in range(1, rounds + 1):
        loader = arms_lib.train_loader(setup, r)
        batches = list(loader.batch_sampler)
        cpu = time.process_time()
        tables = [loader.dataset.__getitems__(rows) for rows in batches]
        out["read_ms"].append(1000 * (time.process_time() - cpu) / len(batches))
        cpu = time.process_time()
        for table in tables:
            loader.collate_fn(table)
        out["collate_ms"].append(1000 * (time.process_time() - cpu) / len(batches))
    return out


def contrast(results: list[tuple[arms_lib.Setup, dict]]) -> str:
    """Why a small model is the hard case: the pipeline's cost per batch grows far more
    slowly with the rows' content than the step's does."""
    found = {s.model_name: r for s, r in results}
    text = (
        "Much of a batch's pipeline cost does not depend on what the rows hold: `datasets` "
        "gathers one Arrow slice per row, decoding makes about ten pyarrow calls per stored "
        "array on that many-chunk table, and `collate` pads and stacks."
    )
    if "av_digits" in found and "gesture" in found:
        a, g = found["av_digits"], found["gesture"]
        pipe = benchlib.median(g["pipe_cpu"]) / benchlib.median(a["pipe_cpu"])
        step = benchlib.median(g["step_cpu"]) / benchlib.median(a["step_cpu"])
        text += (
            f" An av_digits row holds a 28x28 image and a 40x101 spectrogram, a gesture row "
            f"16x2 numbers, yet an av_digits batch costs the pipeline {pipe:.1f}x the CPU time "
            f"of a gesture batch while its training step costs {step:.0f}x."
        )
    return text + (
        " So a model with a cheap step (a small LSTM on short sequences) is the one near the "
        "limit; `train.num_workers=1` moves loading off the training thread, and a larger "
        "batch spreads the per-batch cost."
    )


def report(results: list[tuple[arms_lib.Setup, dict]], *, threads: int, rounds: int,
           load: benchlib.Load, notes: list[str]) -> str:
    med = benchlib.median
    rows, verdicts = [], []
    for setup, r in results:
        ratios = [p / s for p, s in zip(r["pipe"], r["step"], strict=True)]
        ratio = med(ratios)
        cpu_ratio = med([p / s for p, s in zip(r["pipe_cpu"], r["step_cpu"], strict=True)])
        rows.append([
            setup.model_name, setup.train.batch_size, f"{med(r['pipe']):.0f}",
            f"{med(r['step']):.1f}", f"**{ratio:.1f}x** ({benchlib.spread(ratios)})",
            f"{cpu_ratio:.1f}x", f"{1 / (1 + ratio):.0%}",
        ])
        verdicts.append(f"{setup.model_name}: {'met' if ratio >= TARGET else '**NOT met**'}")
    lines = [
        f"Measured {benchlib.today()} on {benchlib.machine_line()}, by `python "
        f"benchmarks/pipeline_vs_step.py`. CPU, float32, torch threads: {threads}; "
        f"`num_workers=0` (the default). Load while it ran: {load.sentence()}",
        "",
        "Pipeline: batches/s of `dm.loader(\"train\", shuffle=True)` alone (one Arrow read "
        "per batch from the preprocessed cache, decoding, `collate`, targets). Step: training "
        "steps/s of the model on batches already in memory (forward, loss, backward, "
        "clipping, AdamW). The two alternate, one epoch each, for "
        f"{rounds} rounds; medians, and the ratio is the median of per-round ratios.",
        "",
        *notes,
        "" if notes else "",
        benchlib.table(
            ["model", "batch size", "pipeline batches/s", "training steps/s",
             "pipeline / step (range)", "per CPU second", "loader share of a loop"],
            rows,
        ),
        "",
        "CPU milliseconds per batch (medians over rounds):",
        "",
        benchlib.table(
            ["model", "Arrow read", "collate (decode, `modality.collate`, targets)",
             "DataLoader and the rest", "pipeline total", "training step"],
            [[s.model_name, f"{med(r['read_ms']):.2f}", f"{med(r['collate_ms']):.2f}",
              f"{max(1000 / med(r['pipe_cpu']) - med(r['read_ms']) - med(r['collate_ms']), 0):.2f}",
              f"{1000 / med(r['pipe_cpu']):.2f}", f"{1000 / med(r['step_cpu']):.1f}"]
             for s, r in results],
        ),
        "",
        f"Target: the pipeline at least {TARGET:g}x faster than the step. "
        + "; ".join(verdicts) + ". The last column is the share of a `num_workers=0` "
        "training loop the loader would take (1 / (1 + ratio)).",
        "",
        contrast(results),
        "",
        "Models: " + "; ".join(f"{s.model_name}: {benchlib.MODELS[s.model_name]}"
                               for s, _ in results) + ".",
    ]
    return "\n".join(line for line in lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(benchlib.MODELS),
                        choices=list(benchlib.MODELS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--write", type=Path, help="markdown file whose section to update")
    args = parser.parse_args(argv)
    benchlib.offline()

    import torch

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    notes: list[str] = []
    results = []
    meter = benchlib.LoadMeter()
    with tempfile.TemporaryDirectory(prefix="mmcore-bench-") as tmp:
        for model in args.models:
            setup = arms_lib.prepare(model, Path(tmp) / model, batch_size=args.batch_size)
            if setup is None:
                notes.append(f"The {model} model was skipped: its data ({benchlib.SHARED}) "
                             "is absent; set MMCORE_SHARED_DATA.")
                print(notes[-1], file=sys.stderr)
                continue
            results.append((setup, measure(setup, args.rounds)))
    if not results:
        print("no model could be measured", file=sys.stderr)
        return 2
    text = report(results, threads=args.threads, rounds=args.rounds, load=meter.stop(),
                  notes=notes)
    benchlib.publish(KEY, TITLE, text, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
