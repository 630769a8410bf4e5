"""Time to the first optimizer step on a warm cache: ``mmcore.Trainer`` against a hand-written
loop, each in a fresh Python process -> the ``first_step`` section of docs/benchmarks.md
(issue 32: "time to the first step on a warm cache <= 1.2x the hand loop's, the same imports
counted on both sides").

The model and data are ``independent_loop.py``'s tiny one (the 5,296 real fingertip
trajectories of ``../shared/data/hand_gestures/point_history_labeled.csv`` read as two
modalities, width 16), so the step itself costs about a millisecond and what is measured is
everything before it. Each arm is a new interpreter started by this script:

* **hand**: ``import torch``, the CSV read into tensors with numpy and ``csv``
  (``independent_loop.hand_data``: the split, the per-channel standardisation), the plain
  ``nn`` model, torch's fused AdamW, then one forward, backward, clipping and step; nothing of
  mmcore is imported;
* **mmcore**: ``import mmcore``, ``Trainer(spec)`` and ``fit()`` on the data cache an untimed
  run left behind, stopped right after its first optimizer step (``report``, plots and
  progress off, ``train.threads=1``);
* **control**: the hand arm again (control / hand is the noise floor).

Timed, per arm: the wall seconds from the moment this script starts the process to the end of
the first step, and the child's CPU seconds by then; also the seconds its imports took (``import
torch`` for the hand arm, ``import mmcore`` plus the Trainer's own imports reached by then for
mmcore, as far as the child can tell). Arms alternate after an untimed warm-up round (which also
warms the OS file cache for both); medians with their range. One torch thread everywhere.

    python benchmarks/first_step.py                        # prints the section
    python benchmarks/first_step.py --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib

KEY = "first_step"
TITLE = "Time to the first step on a warm cache"
HERE = Path(__file__).resolve().parent
ROUNDS = 7

HAND = """
import json, sys, time
t0 = time.time()
import torch
from torch.nn import functional as F
torch.set_num_threads(1)
imported = time.time()
sys.path.insert(0, {here!r})
import independent_loop as il
data = il.hand_data(il.TABLE)
g, p, y = data["train"]
torch.manual_seed(il.SEED)
model = il.hand_model(16)
optimizer = torch.optim.AdamW(model.parameters(), lr=il.LR, weight_decay=il.WEIGHT_DECAY,
                              fused=True)
model.train()
idx = torch.randperm(len(y))[:il.BATCH]
loss = F.cross_entropy(model(g[idx], p[idx]), y[idx])
optimizer.zero_grad(set_to_none=True)
loss.backward()
torch.nn.utils.clip_grad_norm_(model.parameters(), il.CLIP)
optimizer.step()
print(json.dumps({{"start": t0, "imported": imported, "step": time.time(),
                  "cpu": time.process_time()}}), flush=True)
"""

MMCORE = """
import json, os, sys, time
t0 = time.time()
import mmcore
imported = time.time()
spec = json.loads({spec!r})
trainer = mmcore.Trainer(spec, output={out!r}, overwrite=True, quiet=True, plots=False,
                         report=False)
step = trainer._optimizer_step

def first_step(*args, **kwargs):
    step(*args, **kwargs)
    print(json.dumps({{"start": t0, "imported": imported, "step": time.time(),
                      "cpu": time.process_time()}}), flush=True)
    os._exit(0)

trainer._optimizer_step = first_step
trainer.fit()
"""


def run_child(code: str, env: dict[str, str]) -> dict[str, float]:
    """Start ``code`` in a new interpreter; its report, with ``wall`` measured from the spawn."""
    spawned = time.time()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"child failed ({done.returncode}):\n{done.stderr[-3000:]}")
    report = json.loads(lines[-1])
    return {"wall": report["step"] - spawned, "cpu": report["cpu"],
            "imports": report["imported"] - report["start"],
            "interpreter": report["start"] - spawned}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--write", type=Path, help="markdown file whose section to update")
    args = parser.parse_args(argv)
    benchlib.offline()
    sys.path.insert(0, str(HERE))
    import independent_loop as il

    if not il.TABLE.is_file():
        print(f"skipped: {il.TABLE} is absent", file=sys.stderr)
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    meter = benchlib.LoadMeter()
    runs: dict[str, list[dict[str, float]]] = {"hand": [], "mmcore": [], "control": []}
    with tempfile.TemporaryDirectory(prefix="mmcore-first-step-") as tmp:
        work = Path(tmp)
        spec = il.mmcore_spec(il.mmcore_table(work), work, 16, 1)
        codes = {
            "hand": HAND.format(here=str(HERE)),
            "mmcore": MMCORE.format(spec=json.dumps(spec), out=str(work / "run")),
        }
        codes["control"] = codes["hand"]
        for round_ in range(args.rounds + 1):  # round 0: warm-up (the cache, the file cache)
            for arm in ("hand", "mmcore", "control"):
                result = run_child(codes[arm], env)
                if round_:
                    runs[arm].append(result)
            print(f"round {round_}: " + ", ".join(
                f"{arm} {runs[arm][-1]['wall']:.2f} s" for arm in runs if round_), flush=True)
    text = report(runs, meter.stop())
    benchlib.publish(KEY, TITLE, text, args.write)
    return 0


def report(runs: dict[str, list[dict[str, float]]], load: Any) -> str:
    def cell(arm: str, key: str) -> str:
        values = [r[key] for r in runs[arm]]
        return f"{benchlib.median(values):.2f} ({benchlib.spread(values)})"

    rows = [[arm, cell(arm, "wall"), cell(arm, "cpu"), cell(arm, "imports"),
             cell(arm, "interpreter")] for arm in runs]
    ratios = []
    for key in ("wall", "cpu"):
        per_round = [m[key] / ((h[key] + c[key]) / 2) for h, m, c in
                     zip(runs["hand"], runs["mmcore"], runs["control"], strict=True)]
        noise = [c[key] / h[key] for h, c in zip(runs["hand"], runs["control"], strict=True)]
        ratios.append(f"mmcore / hand loop, {key}: **{benchlib.median(per_round):.2f}x** "
                      f"(rounds {benchlib.spread(per_round)}; control / hand "
                      f"{benchlib.median(noise):.2f}x)")
    return "\n\n".join([
        f"Measured {benchlib.today()} on {benchlib.machine_line()}, 1 torch thread, "
        f"{len(runs['hand'])} rounds after a warm-up round. Written by "
        f"`python benchmarks/first_step.py`. {load.sentence()}",
        "Seconds from starting a new Python process to the end of its first optimizer step, "
        "on a warm cache: the hand-written loop (torch, numpy and the CSV: independent_loop.py's "
        "tiny model, fused AdamW) against `mmcore.Trainer(spec).fit()` on the same model and "
        "data (its Arrow cache written by the warm-up round). Median (range). \"imports\": "
        "`import torch` in the hand arm, `import mmcore` in the mmcore arm (torch is imported "
        "later, inside the Trainer); \"interpreter\": from the spawn to the child's first line.",
        benchlib.table(["arm", "wall s to the first step", "CPU s by then", "imports s",
                        "interpreter s"], rows),
        "- " + "\n- ".join(ratios) + " (above 1: mmcore takes longer; the issue's target is "
        "at most 1.2x).",
    ])


if __name__ == "__main__":
    sys.exit(main())
