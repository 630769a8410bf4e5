"""Independent loop: ``mmcore.Trainer`` against a hand-written PyTorch loop that shares no code
with mmcore (issue 14), on the CPU.

The baseline is plain ``torch.nn`` (``nn.Conv1d``, ``nn.LSTM``, ``nn.Linear``), batches sliced
from in-memory tensors it builds itself from the CSV (numpy and ``csv`` only), AdamW, gradient
norm clipping at 1.0 and a plain ``for`` loop. Nothing of mmcore is imported by it: not the
model, the data layer, the batches nor the loss. ``trainer_overhead.py`` compares loops that
share mmcore's model and batches; this one also puts mmcore's model and data layer on trial.

Data: the 5,296 real fingertip trajectories of
``../shared/data/hand_gestures/point_history_labeled.csv`` (16 steps x 2 coordinates, 4
classes), read as two modalities over the same rows: ``position`` (the 16 points as frames
``[16, 2]``) and ``gesture`` (the same trajectories ``[16, 2]``), each standardised per channel
on the training split (both plugins' default, ``normalize: "standard"``), concat fusion, one
classification head. Skipped with a note when the shared data is absent.

Model, at two sizes (``tiny``: width 16, overhead-bound; ``large``: width 256, compute-bound):
gesture = LSTM(2, H) then Linear(H, H) from the last state; position = two Conv1d(k=3, ReLU)
then LSTM(H), mean over steps; concat fusion = MLP([g, p, 2 presence flags] -> H -> H,
dropout 0.1); head = MLP(H -> H -> 4, dropout 0.1); cross-entropy. mmcore builds it from a spec
with ``encoder: "reference"`` for both modalities; the hand loop writes the same layers out.
Both parameter counts are printed and must be equal.

Arms, alternating in each round after an untimed warm-up round: ``hand`` (the independent
loop), ``hand_fused`` (with torch's fused AdamW), ``hand_flushed`` (that, with subnormal floats
flushed to zero), ``mmcore`` (``Trainer(spec).fit()``, ``train.threads=1``, ``report=False``,
plots and progress off, ``train.flush_denormal=false``: the hand loop's arithmetic),
``mmcore_defaults`` (the ``Trainer``'s defaults: subnormals flushed, report and drift reference
on), Lightning when installed, ``control`` (the independent loop again: control / hand is the
noise floor). With ``--threads`` above 1, flushing covers the threads torch starts after it is
set (it belongs to each thread).
What is timed:

* **training loop, per epoch**: hand: the epoch's ``for`` loop (a ``randperm``, slicing each
  batch, forward, loss, ``zero_grad``, backward, clipping, ``step``); mmcore: each call of
  ``Trainer._train_epoch`` (wrapped), which does the same from its ``DataLoader`` plus its own
  bookkeeping. Data preparation is outside both.
* **whole run**: hand: reading the CSV, building the tensors, the model and the optimizer,
  the epochs, a validation pass after each epoch and a final test pass; mmcore: ``Trainer(...)``
  plus ``fit()`` (data set-up from its cache, a hit after the warm-up round; the epochs;
  validation after each epoch; checkpoints and metrics files; the final evaluation of the best
  model on validation and test).

Ratios are **mmcore speed / hand loop speed** (samples/s over samples/s; for the whole run, the
hand loop's seconds over mmcore's): 1.0 is parity, below 1 mmcore is slower. Against the hand
loop they use the mean of the round's hand and control runs, which bracket mmcore in time.

    python benchmarks/independent_loop.py                       # prints the section
    python benchmarks/independent_loop.py --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib
from hand_loop import (  # noqa: F401 (TABLE, STEPS and the hand arms: other scripts use il.*)
    BATCH,
    CLIP,
    LR,
    SEED,
    STEPS,
    TABLE,
    WEIGHT_DECAY,
    hand_accuracy,
    hand_data,
    hand_model,
    read_table,
    run_hand,
    run_lightning,
)

KEY = "independent_loop"
TITLE = "Trainer against an independent hand-written loop"
#: width of every layer, epochs per run, rounds
SIZES = {"tiny": 16, "large": 256}
EPOCHS = {"tiny": 3, "large": 2}
ROUNDS = {"tiny": 5, "large": 5}


# -- the mmcore arm ------------------------------------------------------------------------------
def mmcore_table(work: Path) -> Path:
    """The CSV again with the trajectory also as one JSON cell ``[[x0, y0], ...]``, which the
    position plugin reads as 16 frames of 2 values."""
    out = work / "gestures.csv"
    with TABLE.open(newline="", encoding="utf-8") as fh, out.open("w", newline="") as dst:
        reader = csv.DictReader(fh)
        writer = csv.DictWriter(dst, fieldnames=["label", "frames", *STEPS])
        writer.writeheader()
        for r in reader:
            frames = [[float(r[f"x{i}"]), float(r[f"y{i}"])] for i in range(16)]
            writer.writerow({"label": r["label"], "frames": json.dumps(frames),
                             **{c: r[c] for c in STEPS}})
    return out


def mmcore_spec(table: Path, work: Path, width: int, epochs: int,
                defaults: bool = False) -> dict[str, Any]:
    """The spec of the hand loop's model and arithmetic; ``defaults``: subnormal floats
    flushed to zero, as the ``Trainer`` does by default (``train.flush_denormal``) and the
    hand loop does not."""
    h = width
    return {
        "name": f"bench-independent-{h}",
        "data": {"path": str(table), "split": {"validation": 0.1, "test": 0.1, "seed": SEED},
                 "cache_dir": str(work / "cache")},
        "modalities": {
            "gesture": {"plugin": "gesture", "column": STEPS,
                        "options": {"channels": 2, "encoder": "reference", "hidden_size": h,
                                    "output_size": h}},
            "position": {"plugin": "position", "column": "frames",
                         "options": {"encoder": "reference", "hidden_size": h,
                                     "conv_channels": [h, h]}},
        },
        "fusion": {"name": "concat", "options": {"size": h, "hidden": h, "dropout": 0.1}},
        # plain cross-entropy: the hand loop's loss (mmcore's default smooths labels by 0.1)
        "heads": {"gesture_class": {"kind": "classification", "target": "label",
                                    "options": {"hidden": [h], "dropout": 0.1,
                                                "label_smoothing": 0.0}}},
        "train": {"epochs": epochs, "batch_size": BATCH, "lr": LR, "weight_decay": WEIGHT_DECAY,
                  "grad_clip": CLIP, "scheduler": "constant", "seed": SEED, "device": "cpu",
                  "threads": 1, "progress": False,
                  "modality_loss": 0.0,  # the hand loop computes the fused loss only
                  "flush_denormal": defaults},
    }


def run_mmcore(spec: Any, registry: Any, work: Path, run: int,
               defaults: bool = False) -> dict[str, float]:
    """``Trainer(spec).fit()`` with report and plots off, or with the ``Trainer``'s own
    defaults (``defaults``: the modality report and the drift reference on, plots off)."""
    import mmcore

    start = time.perf_counter()
    options = {} if defaults else {"plots": False, "report": False}
    trainer = mmcore.Trainer(spec, output=work / f"run-{run}", overwrite=True, quiet=True,
                             registry=registry, **options)
    epochs: list[tuple[float, float]] = []
    train_epoch = trainer._train_epoch

    def timed(*args, **kwargs):
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            return train_epoch(*args, **kwargs)
        finally:
            epochs.append((time.perf_counter() - t0, time.process_time() - c0))

    trainer._train_epoch = timed
    final = trainer.fit()
    total = time.perf_counter() - start
    rows = trainer.data.num_rows("train") * len(epochs)
    test = final.get("test", final.get("metrics", {}).get("test", {}))
    accuracy = next((v for k, v in _flat(test) if k.endswith("accuracy")), float("nan"))
    return {"loop_s": sum(w for w, _ in epochs), "loop_cpu_s": sum(c for _, c in epochs),
            "rows": rows, "total_s": total, "accuracy": accuracy,
            "params": sum(q.numel() for q in trainer.model.parameters())}


def _flat(d: Any, prefix: str = "") -> list[tuple[str, float]]:
    if isinstance(d, dict):
        return [kv for k, v in d.items() for kv in _flat(v, f"{prefix}{k}.")]
    return [(prefix.rstrip("."), d)] if isinstance(d, int | float) else []


# -- rounds and the report -----------------------------------------------------------------------
def compare(size: str, work: Path, registry: Any, threads: int, rounds: int,
            epochs: int, pl: Any = None) -> dict[str, Any]:
    import torch

    from mmcore.spec import validate_spec

    width = SIZES[size]
    table = mmcore_table(work)
    spec, spec_defaults = (
        validate_spec(mmcore_spec(table, work, width, epochs, defaults), base_dir=work,
                      registry=registry) for defaults in (False, True))
    runners = {"hand": lambda i: run_hand(width, epochs),
               "hand_fused": lambda i: run_hand(width, epochs, fused=True),
               "hand_flushed": lambda i: run_hand(width, epochs, fused=True, flush=True),
               "mmcore": lambda i: run_mmcore(spec, registry, work, i),
               "mmcore_defaults": lambda i: run_mmcore(spec_defaults, registry, work, i,
                                                       defaults=True)}
    if pl is not None:
        runners["lightning"] = lambda i: run_lightning(width, epochs, work, pl)
    runners["control"] = lambda i: run_hand(width, epochs)
    runs: dict[str, list[dict[str, float]]] = {a: [] for a in runners}
    for i in range(rounds + 1):
        for arm, runner in runners.items():
            figures = runner(i)
            if torch.get_num_threads() != threads:
                print(f"note: {arm} left torch at {torch.get_num_threads()} threads; set back",
                      file=sys.stderr)
                torch.set_num_threads(threads)
            if i == 0:
                print(f"{size}: {arm} has {figures['params']:,} parameters", file=sys.stderr)
                continue
            runs[arm].append(figures)
            print(f"{size} round {i} {arm}: {figures['rows'] / figures['loop_s']:.0f} samples/s"
                  f" in the loop, {figures['total_s']:.2f} s whole run, test accuracy "
                  f"{figures['accuracy']:.3f}", file=sys.stderr)
    params = {a: r[0]["params"] for a, r in runs.items()}
    if len(set(params.values())) != 1:
        raise SystemExit(f"{size}: parameter counts differ ({params}); the models are not "
                         "the same architecture")
    return {"size": size, "width": width, "epochs": epochs, "rounds": rounds, "runs": runs,
            "params": params["hand"]}


def ratios(result: dict[str, Any], arm: str, key: str, base: str = "hand") -> list[float]:
    """Per round, ``arm``'s speed over ``base``'s (for the hand loop, the mean of hand and
    control, unless ``arm`` is the control): ``rows / key`` for loop keys, ``1 / total_s`` for
    the whole run."""
    runs = result["runs"]

    def speed(r: dict[str, float]) -> float:
        return (r["rows"] / r[key]) if key != "total_s" else 1.0 / r[key]

    out = []
    for i, mine in enumerate(runs[arm]):
        theirs = speed(runs[base][i])
        if base == "hand" and arm != "control":
            theirs = (theirs + speed(runs["control"][i])) / 2
        out.append(speed(mine) / theirs)
    return out


def size_report(result: dict[str, Any]) -> str:
    med, spread = benchlib.median, benchlib.spread
    runs = result["runs"]
    rows_per_epoch = {a: r[0]["rows"] / result["epochs"] for a, r in runs.items()}
    lines = [
        f"### {result['size']} (width {result['width']})",
        "",
        f"{result['params']:,} parameters in both models. {rows_per_epoch['mmcore']:.0f} "
        f"training rows for mmcore, {rows_per_epoch['hand']:.0f} for the hand loop (each its "
        f"own seeded 80/10/10 split), batch size {BATCH}, {result['epochs']} epoch(s) per run, "
        f"{result['rounds']} rounds.",
        "",
    ]
    rows = []
    for arm, rs in runs.items():
        loop = [r["rows"] / r["loop_s"] for r in rs]
        cpu = [r["rows"] / r["loop_cpu_s"] for r in rs]
        per_epoch = [r["loop_s"] / result["epochs"] for r in rs]
        total = [r["total_s"] for r in rs]
        rows.append([arm, f"{med(loop):.0f}", f"{min(loop):.0f}-{max(loop):.0f}", f"{med(cpu):.0f}",
                     f"{med(per_epoch):.3f}", f"{med(total):.2f}", spread(total),
                     f"{med([r['accuracy'] for r in rs]):.3f}"])
    lines.append(benchlib.table(
        ["arm", "loop samples/s (median)", "range", "samples per CPU second",
         "seconds per epoch", "whole run s (median)", "range", "test accuracy"], rows))
    lines.append("")
    pairs = [("mmcore", "hand", "mmcore / hand loop"),
             ("mmcore", "hand_fused", "mmcore / hand loop with fused AdamW (mmcore's kernel)"),
             ("mmcore_defaults", "hand_fused", "mmcore with the `Trainer`'s defaults (subnormals "
              "flushed, the modality report and drift reference on) / hand loop with fused "
              "AdamW"),
             ("mmcore_defaults", "hand_flushed", "mmcore with the `Trainer`'s defaults / hand "
              "loop with fused AdamW and subnormals flushed (the same arithmetic)"),
             ("hand_flushed", "hand_fused", "subnormals flushed / not, in the hand loop with "
              "fused AdamW"),
             ("hand_fused", "hand", "fused / unfused AdamW in the hand loop")]
    if "lightning" in runs:
        pairs += [("mmcore", "lightning", "mmcore / Lightning on the hand model"),
                  ("lightning", "hand", "Lightning / hand loop")]
    pairs.append(("control", "hand", "control / hand loop (noise floor)"))
    for arm, base, label in pairs:
        loop = ratios(result, arm, "loop_s", base)
        cpu = ratios(result, arm, "loop_cpu_s", base)
        whole = ratios(result, arm, "total_s", base)
        lines.append(f"- {label}: training loop **{med(loop):.3f}x** (rounds {spread(loop)}), "
                     f"per CPU second {med(cpu):.3f}x (rounds {spread(cpu)}), whole run "
                     f"**{med(whole):.3f}x** (rounds {spread(whole)})")
    return "\n".join(lines)


def report(results: list[dict[str, Any]], *, threads: int, load: benchlib.Load,
           notes: list[str]) -> str:
    lines = [
        f"Measured {benchlib.today()} on {benchlib.machine_line()}, by `python "
        f"benchmarks/independent_loop.py`. CPU, float32, torch threads: {threads} intra-op, 1 "
        f"inter-op (mmcore: `train.threads=1`). Load while it ran: {load.sentence()}",
        "",
        "The baseline shares no code with mmcore: plain `torch.nn` layers (`Conv1d`, `LSTM`, "
        "`Linear`), tensors it reads from the CSV itself and slices per batch, AdamW (lr "
        f"{LR:g}, weight decay {WEIGHT_DECAY:g}), gradient norm clipping at {CLIP:g}, a plain "
        "loop. mmcore trains the same architecture, built from a spec with `encoder: "
        "\"reference\"` for both modalities (`gesture`: LSTM then a linear layer; `position`: "
        "two `Conv1d` then an LSTM), concat fusion and one classification head, with "
        "`Trainer(spec).fit()` (`report=False`, plots and progress off; plain cross-entropy "
        "and no per-modality loss, as the hand loop computes: `label_smoothing: 0`, "
        "`train.modality_loss: 0`; subnormal floats computed with, as the hand loop does: "
        "`train.flush_denormal: false`); the `mmcore_defaults` arm is the same spec with the "
        "`Trainer`'s own defaults (`Trainer(spec, output=...)`: subnormal floats flushed to "
        "zero, the modality report and the drift reference after training; plots stay off, "
        "as `Trainer` leaves them). Data: "
        "the real "
        "fingertip trajectories of `../shared/data/hand_gestures/point_history_labeled.csv` "
        "(16 steps x 2), read as both modalities over the same rows, each standardised per "
        "channel on the training rows (the plugins' default; until 2026-12-08 the hand loop "
        "left `position` raw, which mmcore had not done since its plugin began "
        "standardising).",
        "",
        "Timed: the **training loop** (hand: each epoch's loop — a `randperm`, slicing, forward, "
        "loss, backward, clipping, step; mmcore: each `Trainer._train_epoch` call — its "
        "`DataLoader`, forward, loss, backward, clipping, step and bookkeeping; data "
        "preparation is outside both), and the **whole run** (hand: reading the CSV, tensors, "
        "model, the epochs, validation after each epoch, a final test pass; mmcore: "
        "`Trainer(...)` and `fit()`: data set-up from its cache, the epochs, validation after "
        "each epoch, checkpoints and metrics files, the final evaluation on validation and "
        "test). Arms alternate (hand, mmcore, control, ...) after an untimed warm-up round; "
        "\"control\" is the hand loop again. Ratios are **mmcore speed / hand loop speed**, "
        "the median of per-round ratios (hand = the mean of the round's hand and control runs, "
        "which bracket mmcore): 1.0 is parity, below 1 mmcore is slower. control / hand shows "
        "how far noise alone moves a ratio.",
        *(["", *notes] if notes else []),
    ]
    for result in results:
        lines += ["", size_report(result)]
    lines += [
        "",
        "What differs besides the code: mmcore's batches say they are full length "
        "(`ModalityBatch.full`), so its encoders skip masking and packing; its loop keeps "
        "epoch losses and a NaN check on the device and steps a scheduler; its AdamW has two "
        "parameter groups (no decay on biases) and uses torch's fused kernel, where the hand "
        "loop's and Lightning's use torch's default, one small kernel per parameter on the "
        "CPU (about 90 us against 470 us a step on the tiny model: most of mmcore's lead "
        "there); the `hand_fused` arm is the hand loop with the fused kernel, so mmcore / "
        "hand_fused compares the two loops on the same optimizer kernel; `hand_flushed` is "
        "that loop with subnormal floats flushed to zero as the `Trainer` does by default "
        "(`train.flush_denormal`), so mmcore_defaults / hand_flushed compares the loops on the "
        "same arithmetic (whether a run meets subnormals depends on its weights and data: the "
        "large model's LSTMs do, the tiny one's hardly). mmcore's batches come "
        "from a `DataLoader` over the split held in memory "
        "(`data.in_memory`). The hand loop's whole run re-reads "
        "the CSV each time, mmcore's reads its cache; mmcore's also writes checkpoints and "
        "evaluates on validation as well as test at the end. Test accuracy is there to show "
        "both arms learn; it is not comparable between them (different splits, initial "
        "weights and shuffling; mmcore evaluates its best epoch).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--rounds", type=int, help=f"timed rounds (default {ROUNDS})")
    parser.add_argument("--epochs", type=int, help=f"epochs per run (default {EPOCHS})")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--write", type=Path, help="markdown file whose section to update")
    args = parser.parse_args(argv)
    benchlib.offline()
    if not TABLE.is_file():
        print(f"skipped: {TABLE} is absent (set MMCORE_SHARED_DATA to the folder holding "
              "hand_gestures/)", file=sys.stderr)
        return 0

    import torch

    from mmcore.plugins import get_registry

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    registry = get_registry()
    from training_arms import import_lightning

    pl, lightning = import_lightning()
    notes = ([f"Lightning: pytorch_lightning {lightning}, on the hand loop's model and tensors "
              "(a `DataLoader` over a `TensorDataset`, shuffled), validation each epoch, its "
              "default checkpointing into a temporary folder."] if pl is not None else
             [f"Lightning arm skipped: {lightning} (install the `bench` extra with `--no-deps` "
              "beside your torch)."])
    meter = benchlib.LoadMeter()
    results = []
    with tempfile.TemporaryDirectory(prefix="mmcore-bench-") as tmp:
        for size in args.sizes:
            work = Path(tmp) / size
            work.mkdir()
            results.append(compare(size, work, registry, args.threads,
                                   args.rounds or ROUNDS[size], args.epochs or EPOCHS[size], pl))
    text = report(results, threads=args.threads, load=meter.stop(), notes=notes)
    benchlib.publish(KEY, TITLE, text, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
