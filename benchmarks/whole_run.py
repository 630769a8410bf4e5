"""Whole run: ``Trainer(spec).fit()`` with the ``Trainer``'s defaults against a plain script
that trains and evaluates the same model on the same data (issue 32's whole-run target), on the
CPU.

The README demo's model as the speed figures were first taken (``benchlib.model_spec
"av_digits"``: image + audio encoders, weighted fusion, one classification head) on the bundled
av_digits data, 3 epochs. Arms, alternating in each round after an untimed warm-up round:

* ``plain``: what a hand-written script does for a whole run: set the data up from its cache
  (mmcore's ``DataModule``), build the model, fused AdamW (subnormal floats flushed to zero,
  as the ``Trainer``'s ``train.flush_denormal`` does by default, so both compute alike),
  each epoch's training loop followed by a pass over validation (accuracy, batches of 128 rows,
  inside ``mmcore.encoder.recurring_inputs()`` as the Trainer's validation is, so the audio
  encoder's MiniRocket features are remembered alike), a final pass over test;
* ``mmcore``: ``Trainer(spec, output=...).fit()`` with the ``Trainer``'s defaults (the
  modality report and the drift reference after training; checkpoints, metrics files, the
  best epoch's weights evaluated on validation and test);
* ``mmcore_no_report``: the same with ``report=False``;
* ``control``: the plain script again (control / plain is the noise floor).

The plain script shares mmcore's model, data layer and batches (so do ``trainer_overhead.py``'s
arms): its figure is about what the ``Trainer`` does around the training, not about the model
(``independent_loop.py`` puts those on trial against code that shares nothing). Ratios are
**mmcore speed / plain speed** (the plain script's CPU seconds over mmcore's), the median of
per-round ratios, with plain = the mean of the round's plain and control runs.

    python benchmarks/whole_run.py                          # prints the section
    python benchmarks/whole_run.py --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import benchlib
import training_arms as arms

KEY = "whole_run"
TITLE = "Whole run with the Trainer's defaults against a plain script"
MODEL, EPOCHS, ROUNDS, EVAL_BATCH = "av_digits", 3, 5, 128


def run_plain(setup: arms.Setup, epochs: int, run: int = 0) -> dict[str, float]:
    """The plain script's whole run: data set-up from the cache, model, optimizer, epochs with
    a validation pass after each, a final test pass; subnormal floats flushed to zero, as the
    ``Trainer`` does by default."""
    import torch

    torch.set_flush_denormal(True)
    try:
        return _plain_run(setup, epochs)
    finally:
        torch.set_flush_denormal(False)


def _plain_run(setup: arms.Setup, epochs: int) -> dict[str, float]:
    import torch

    from mmcore.data import DataModule
    from mmcore.encoder import recurring_inputs
    from mmcore.model import build_modalities

    start, cpu = time.perf_counter(), time.process_time()
    spec = setup.spec
    dm = DataModule(spec, build_modalities(spec, setup.registry), registry=setup.registry,
                    progress=False)
    dm.setup()
    setup = arms.Setup(setup.model_name, spec, setup.resolved, dm, setup.registry,
                       setup.device, False, setup.work, dm.num_rows("train"))
    model = arms.build(setup)
    optimizer = arms.plain_optimizer(setup, model)

    def accuracy(split: str) -> float:
        model.eval()
        correct = rows = 0
        # as the Trainer evaluates: encoders that can remember their features of a split seen
        # again (MiniRocket, the audio encoder here) may do so (mmcore.encoder)
        with torch.no_grad(), recurring_inputs():
            for batch in dm.loader(split, batch_size=EVAL_BATCH, shuffle=False):
                out = model(batch.inputs)[setup.head]
                correct += int((out.argmax(-1) == batch.targets[setup.head]).sum())
                rows += len(batch)
        model.train()
        return correct / max(rows, 1)

    model.train()
    for epoch in range(1, epochs + 1):
        for batch in arms.train_loader(setup, epoch):
            arms.plain_step(setup, model, optimizer, batch)
        accuracy("validation")
    test = accuracy("test")
    return {"total_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu,
            "accuracy": test}


def run_mmcore(setup: arms.Setup, epochs: int, run: int, report: bool) -> dict[str, float]:
    """``Trainer(spec, output=...).fit()``, the Trainer's defaults (``report`` as given)."""
    import mmcore

    spec = setup.spec.model_copy(  # one thread, as the plain script runs
        update={"train": setup.train.model_copy(update={"epochs": epochs, "threads": 1})})
    start, cpu = time.perf_counter(), time.process_time()
    trainer = mmcore.Trainer(spec, output=setup.work / f"run-{run}", overwrite=True,
                             quiet=True, report=report, registry=setup.registry)
    final = trainer.fit()
    return {"total_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu,
            "accuracy": final.get("test", {}).get(f"{setup.head}.accuracy", float("nan"))}


def compare(setup: arms.Setup, epochs: int, rounds: int) -> dict[str, list[dict[str, float]]]:
    runs: dict[str, list[dict[str, float]]] = {a: [] for a in
                                               ("plain", "mmcore", "mmcore_no_report",
                                                "control")}
    n = 0
    for i in range(rounds + 1):
        # the order reversed every other round, so no arm always follows the same one
        for arm in (list(runs) if i % 2 == 0 else list(reversed(runs))):
            n += 1
            if arm in ("plain", "control"):
                result = run_plain(setup, epochs, n)
            else:
                result = run_mmcore(setup, epochs, n, report=arm == "mmcore")
            if i:  # round 0 warms up
                runs[arm].append(result)
            print(f"round {i} {arm}: {result['cpu_s']:.2f} CPU s", file=sys.stderr)
    return runs


def ratios(runs: dict[str, list[dict[str, float]]], arm: str, key: str) -> list[float]:
    """Per round: the plain script's seconds (the mean of plain and control) over ``arm``'s."""
    return [(p[key] + c[key]) / 2 / a[key] for p, c, a in
            zip(runs["plain"], runs["control"], runs[arm], strict=True)]


def report(runs: dict[str, list[dict[str, float]]], setup: arms.Setup, epochs: int,
           load: benchlib.Load) -> str:
    lines = [
        f"Measured {benchlib.today()} on {benchlib.machine_line()}, by `python "
        f"benchmarks/whole_run.py`. CPU, float32, torch threads: 1 intra-op, 1 inter-op. "
        f"Load while it ran: {load.sentence()}",
        "",
        f"Model: the README demo's as the speed figures were first taken (image + audio "
        f"encoders, weighted fusion, one classification head) on the bundled av_digits data "
        f"({setup.train_rows} training rows, batch size {setup.train.batch_size}), {epochs} "
        f"epochs per run, {len(runs['plain'])} rounds. `plain` is a script that sets the data "
        "up from mmcore's cache, builds mmcore's model, trains with fused AdamW and subnormal "
        "floats flushed to zero (as the `Trainer` does by default), passes over "
        f"validation after each epoch and over test at the end (batches of {EVAL_BATCH}, "
        "inside `mmcore.encoder.recurring_inputs()` as the Trainer's are, so the audio "
        "encoder's MiniRocket features of a split seen before are remembered in both); "
        "`mmcore` is `Trainer(spec, output=...).fit()` with the Trainer's defaults (checkpoints "
        "and metrics files, the best epoch's weights evaluated on validation and test, the "
        "modality report and the drift reference); `mmcore_no_report` the same with "
        "`report=False`; `control` is the plain script again. CPU seconds of the whole run "
        "(this process), alternating arms after an untimed warm-up round, their order "
        "reversed every other round.",
        "",
        benchlib.table(
            ["arm", "CPU s (median)", "range", "wall s (median)", "test accuracy (median)"],
            [[arm, f"{statistics.median(r['cpu_s'] for r in rs):.2f}",
              benchlib.spread([r["cpu_s"] for r in rs]),
              f"{statistics.median(r['total_s'] for r in rs):.2f}",
              f"{statistics.median(r['accuracy'] for r in rs):.3f}"]
             for arm, rs in runs.items()]),
        "",
    ]
    for arm, text in (("mmcore", "with the Trainer's defaults"),
                      ("mmcore_no_report", "with `report=False`")):
        r = ratios(runs, arm, "cpu_s")
        lines.append(f"- mmcore {text} / plain script: whole run **{statistics.median(r):.3f}x**"
                     f" (rounds {min(r):.3g}-{max(r):.3g})")
    noise = [c["cpu_s"] / p["cpu_s"] for p, c in zip(runs["plain"], runs["control"],
                                                     strict=True)]
    lines.append(f"- plain / control (noise floor): **{statistics.median(noise):.3f}x** "
                 f"(rounds {min(noise):.3g}-{max(noise):.3g})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--write", type=Path, help="markdown file whose section to update")
    args = parser.parse_args(argv)
    benchlib.offline()
    benchlib.torch_one_thread()
    meter = benchlib.LoadMeter()
    with tempfile.TemporaryDirectory(prefix="mmcore-bench-") as tmp:
        setup = arms.prepare(MODEL, Path(tmp), epochs=args.epochs)
        if setup is None:
            print(f"skipped: the {MODEL} data is absent", file=sys.stderr)
            return 0
        runs = compare(setup, args.epochs, args.rounds)
        text = report(runs, setup, args.epochs, meter.stop())
    benchlib.publish(KEY, TITLE, text, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
