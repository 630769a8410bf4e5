"""Prediction latency: the eager model (``mmcore.load``) against its export bundle on
onnxruntime (``mmcore.inference.runtime``), per row and per batch, on the CPU.

The README demo (av_digits: image + audio, late fusion) is trained for one epoch on the
bundled data and exported. Two things are timed, each at 1 row and at a batch of 64:

- ``predict``: raw rows (file paths) to predictions, the whole path a user calls
  (``Predictor.predict`` against ``Runtime.predict``: decoding, preprocessing, collation,
  the model, the heads' formatting);
- ``graph``: the model alone on one collated batch (``model(inputs)`` under
  ``inference_mode`` against the ONNX session on the same arrays).

Arms alternate within each round (round ``i`` starts with arm ``i mod n``); a control arm
runs the eager model a second time, so the spread between two identical arms shows the noise.
Figures are medians over rounds of the median of ``--repeats`` calls, with the range over
rounds. One torch thread and one onnxruntime thread.

    python benchmarks/export_latency.py [--rounds 7] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import benchlib

KEY = "export_latency"
TITLE = "Export: eager against onnxruntime"
REPO = Path(__file__).resolve().parents[1]
SIZES = (1, 64)


def _time(fn: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``repeats`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def prepare(folder: Path) -> tuple:
    import mmcore
    from mmcore.inference import runtime
    from mmcore.inference.export import export_run

    sys.path.insert(0, str(REPO / "examples" / "av_digits"))
    from common import TABLE  # noqa: E402 - the example's own table (degraded copy)

    run = folder / "run"
    mmcore.Trainer(str(REPO / "examples" / "av_digits" / "spec.py"), output=run,
                   overrides=["train.epochs=1"], quiet=True, report=False, plots=False).fit()
    start = time.process_time()
    bundle = export_run(run, folder / "bundle")
    exported = time.process_time() - start
    with open(TABLE, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return (mmcore.load(run, device="cpu"), runtime.load(bundle, threads=1), rows, TABLE.parent,
            exported)


def arms(predictor, served, rows, root) -> dict[tuple[str, int], dict[str, Callable]]:
    import torch

    out = {}
    for size in SIZES:
        chunk = rows[:size]
        inputs = predictor._data_module(setup=False).batch_from_rows(chunk).inputs

        def eager_graph(inputs=inputs):
            with torch.inference_mode():
                return predictor.model(inputs)

        out[("predict", size)] = {
            "eager": lambda chunk=chunk: predictor.predict(chunk, root=root),
            "onnxruntime": lambda chunk=chunk: served.predict(chunk, root=root),
            "eager (control)": lambda chunk=chunk: predictor.predict(chunk, root=root),
        }
        out[("graph", size)] = {
            "eager": eager_graph,
            "onnxruntime": lambda inputs=inputs: served.run(inputs),
            "eager (control)": eager_graph,
        }
    return out


def measure(cases, rounds: int, repeats: int) -> dict:
    results = {case: {arm: [] for arm in fns} for case, fns in cases.items()}
    for r in range(rounds):
        for case, fns in cases.items():
            names = list(fns)
            for k in range(len(names)):
                arm = names[(r + k) % len(names)]
                results[case][arm].append(_time(fns[arm], repeats))
    return results


def report(results: dict, rounds: int, repeats: int, load, exported: float) -> str:
    rows = []
    for (what, size), arms_ in results.items():
        eager = benchlib.median(arms_["eager"])
        for arm, values in arms_.items():
            ms = [v * 1000 for v in values]
            per_row = benchlib.median(ms) / size
            ratio = eager / benchlib.median(values)
            rows.append([what, size, arm, f"{benchlib.median(ms):.3g}", benchlib.spread(ms),
                         f"{per_row:.3g}", f"{ratio:.2f}x"])
    return "\n".join([
        f"{benchlib.machine_line()}, {benchlib.today()}. One torch thread, one onnxruntime "
        f"thread; {rounds} rounds of {repeats} calls per arm, arms alternating. "
        f"{load.sentence()}",
        "",
        "The README demo (av_digits, one epoch), eager `mmcore.load` against its ONNX bundle "
        "on `mmcore.inference.runtime`. `predict`: raw rows (file paths) to predictions, "
        "decoding and preprocessing included; `graph`: the model alone on one collated batch. "
        "*speed-up* is the eager median over the arm's (above 1: faster than eager); the "
        "control arm is the eager model again.",
        "",
        f"Exporting the bundle (`export_run`: tracing, ONNX conversion and optimisation, the "
        f"parity check) took {exported:.1f} CPU seconds.",
        "",
        benchlib.table(["what", "rows", "arm", "median ms", "range ms", "ms per row",
                        "speed-up"], rows),
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--write", type=Path, help="replace this script's section there")
    args = parser.parse_args()
    benchlib.offline()
    benchlib.torch_one_thread()
    with tempfile.TemporaryDirectory(prefix="mmcore-bench-") as tmp:
        predictor, served, rows, root, exported = prepare(Path(tmp))
        meter = benchlib.LoadMeter()
        results = measure(arms(predictor, served, rows, root), args.rounds, args.repeats)
        text = report(results, args.rounds, args.repeats, meter.stop(), exported)
    benchlib.publish(KEY, TITLE, text, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
