"""Scaling: time per epoch and peak memory as the data grows and as modalities are added.

Every point is one ``mmcore.Trainer(...).fit()`` of one epoch in a fresh Python process, so
``ru_maxrss`` is that point's own peak resident memory; the data cache starts empty.

* **data**: the README demo model (image + audio, ``examples/av_digits/spec.py``) on the
  bundled 800 real rows repeated x1, x4, x16 (the ``split`` column repeated with them).
  Targets: time per epoch linear in the rows, peak RSS flat.
* **modalities**: one to five modalities added in the order position, gesture, image, text,
  audio, on one table of real rows from ``../shared/data`` joined by label (see
  ``benchlib.write_five_modality_table``; skipped with a note when the folder is absent).

    python benchmarks/scaling.py [--scales 1 4 16] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib

KEY = "scaling"
TITLE = "Scaling"


# -- the child: one point
def _status_mb(field: str) -> float:
    status = Path("/proc/self/status")
    text = status.read_text() if status.exists() else ""
    found = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(found.group(1)) / 1024 if found else float("nan")


def run_point(config: dict[str, Any]) -> dict[str, Any]:
    """Train one epoch of the point's spec; return timings and memory."""
    benchlib.offline()
    import stopwatch
    import torch

    import mmcore
    from mmcore.spec import validate_spec
    from mmcore.train import trainer as trainer_module

    torch.set_num_threads(config["threads"])
    torch.set_num_interop_threads(1)
    work = Path(config["work"])
    spec = validate_spec(config["spec"], base_dir=benchlib.AV_DIGITS)
    after_import = _status_mb("VmRSS")
    trainer = mmcore.Trainer(spec, output=work / "run", overwrite=True, quiet=True, plots=False,
                             report=False)
    watch = stopwatch.Stopwatch()
    watch.on(trainer, "_train_epoch", "loop")
    watch.on(trainer, "evaluate", "validation")  # inside _finish it counts as "final"
    watch.on(trainer, "_finish", "final")
    start = time.perf_counter()
    with stopwatch.patched(trainer_module, ["set_up_run_data"], watch, "setup"):
        trainer.fit()
    total = time.perf_counter() - start
    dm = trainer.data
    cache = Path(config["spec"]["data"]["cache_dir"])
    return {
        "rows": {s: dm.num_rows(s) for s in dm.splits},
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "setup_s": watch.seconds["setup"],
        "loop_s": watch.seconds["loop"],
        "loop_cpu_s": watch.cpu["loop"],
        "validation_s": watch.seconds.get("validation", 0.0),
        "final_s": watch.seconds["final"],
        "total_s": total,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_after_import_mb": after_import,
        "rss_anon_end_mb": _status_mb("RssAnon"),
        "rss_file_end_mb": _status_mb("RssFile"),
        "cache_mb": sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) / 2**20,
    }


# -- the parent
def measure(label: str, spec: dict[str, Any], work: Path, threads: int) -> dict[str, Any]:
    work.mkdir(parents=True)
    config = {"spec": spec, "work": str(work), "threads": threads}
    cmd = [sys.executable, __file__, "--child", json.dumps(config)]
    env = {**os.environ, **benchlib.OFFLINE_ENV}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{label} failed:\n{done.stderr[-4000:]}")
    result = {"label": label, **json.loads(done.stdout.strip().splitlines()[-1])}
    print(f"{label}: {json.dumps(result)}", file=sys.stderr)
    return result


def repeated_table(scale: int, path: Path) -> Path:
    """The bundled av_digits table, every row repeated ``scale`` times."""
    with (benchlib.AV_DIGITS / "data" / "pairs.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        rows, fields = list(reader), reader.fieldnames or []
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for _ in range(scale):
            writer.writerows(rows)
    return path


def data_points(scales: list[int], work: Path, threads: int) -> list[dict[str, Any]]:
    out = []
    for scale in scales:
        folder = work / f"x{scale}"
        folder.mkdir(parents=True)
        spec = benchlib.av_digits_spec(folder / "cache", epochs=1)
        spec["data"] = {"path": str(repeated_table(scale, folder / "pairs.csv")),
                        "split_column": "split", "root": str(benchlib.AV_DIGITS / "data"),
                        "cache_dir": str(folder / "cache")}
        out.append({"scale": scale, **measure(f"x{scale}", spec, folder / "point", threads)})
    return out


def modality_points(rows: int, work: Path, threads: int) -> list[dict[str, Any]] | None:
    work.mkdir(parents=True)
    table = benchlib.write_five_modality_table(work / "five.csv", rows)
    if table is None:
        return None
    out = []
    for n in range(1, len(benchlib.FIVE) + 1):
        names = benchlib.FIVE[:n]
        folder = work / f"m{n}"
        spec = benchlib.five_modality_spec(table, names, folder / "cache", epochs=1)
        out.append({"modalities": list(names),
                    **measure(" + ".join(names), spec, folder, threads)})
    return out


def _rows(r: dict[str, Any]) -> str:
    return "/".join(str(r["rows"].get(s, 0)) for s in ("train", "validation", "test"))


def report(data: list[dict[str, Any]], mods: list[dict[str, Any]] | None, *, threads: int,
           five_rows: int, load: benchlib.Load) -> str:
    base = data[0]

    def per_k(r: dict[str, Any], key: str) -> float:  # seconds per 1000 training rows
        return 1000 * r[key] / r["rows"]["train"]

    lines = [
        f"Measured {benchlib.today()} on {benchlib.machine_line()}, by `python "
        f"benchmarks/scaling.py`. Each point: `Trainer(...).fit()` of one epoch in a fresh "
        f"process (CPU, float32, torch threads {threads}, `num_workers=0`, empty data cache), "
        "so peak RSS (`ru_maxrss`) is that point's own. Load while it ran: " + load.sentence(),
        "",
        "### Data size",
        "",
        "The README demo model (image + audio, `examples/av_digits/spec.py`) on the bundled "
        "800 real rows repeated N times (with their split). \"Set-up\" is reading the CSV, "
        "decoding and preprocessing every row and writing the Arrow cache; \"epoch\" is the "
        "training loop over the train split.",
        "",
        benchlib.table(
            ["size", "rows (train/val/test)", "set-up (s)", "epoch (s)",
             "epoch per 1000 train rows (s)", "epoch, CPU s per 1000 rows", "peak RSS (MB)",
             "RSS after imports (MB)", "anon / file RSS at end (MB)", "cache (MB)"],
            [[f"x{r['scale']}", _rows(r), f"{r['setup_s']:.1f}", f"{r['loop_s']:.1f}",
              f"{per_k(r, 'loop_s'):.2f}", f"{per_k(r, 'loop_cpu_s'):.2f}",
              f"{r['peak_rss_mb']:.0f}", f"{r['rss_after_import_mb']:.0f}",
              f"{r['rss_anon_end_mb']:.0f} / {r['rss_file_end_mb']:.0f}", f"{r['cache_mb']:.0f}"]
             for r in data],
        ),
        "",
    ]
    for r in data[1:]:
        rows_x = r["rows"]["train"] / base["rows"]["train"]
        time_x = r["loop_s"] / base["loop_s"]
        cpu_x = r["loop_cpu_s"] / base["loop_cpu_s"]
        rss_x = r["peak_rss_mb"] / base["peak_rss_mb"]
        anon_x = r["rss_anon_end_mb"] / base["rss_anon_end_mb"]
        lines.append(
            f"- x{r['scale']}: {rows_x:.0f}x the training rows took {time_x:.1f}x the epoch's "
            f"wall time ({time_x / rows_x:.2f} of proportional) and {cpu_x:.1f}x its CPU time "
            f"({cpu_x / rows_x:.2f} of proportional). Peak RSS {rss_x:.2f}x that of "
            f"x{base['scale']} (+{r['peak_rss_mb'] - base['peak_rss_mb']:.0f} MB); at the end, "
            f"anonymous memory {anon_x:.2f}x "
            f"({r['rss_anon_end_mb'] - base['rss_anon_end_mb']:+.0f} MB) and file-backed "
            f"{r['rss_file_end_mb'] - base['rss_file_end_mb']:+.0f} MB for a cache "
            f"{r['cache_mb'] - base['cache_mb']:+.0f} MB larger."
        )
    lines += [
        "",
        "Time per 1000 training rows staying level means the epoch is linear in the data; "
        "CPU time is the steadier measure on a shared machine (wall time also counts the "
        "time other jobs held the cores: compare the load above). Anonymous memory (Python "
        "objects, tensors, the model) is what the process holds; file-backed memory is "
        "shared libraries and the memory-mapped Arrow cache, pages the kernel may drop at "
        "will: growth there, with anonymous memory level, is the mapped cache, not memory "
        "the data layer holds.",
    ]
    lines += ["", "### Modalities", ""]
    if mods is None:
        lines.append(f"Skipped: `{benchlib.SHARED}` is absent (set MMCORE_SHARED_DATA).")
        return "\n".join(lines)
    lines += [
        f"One table of {five_rows} rows built from real rows of `../shared/data` (the split "
        "of av_digits' `pairs.csv`): each av_digits row (MNIST image, FSDD audio, digit label) "
        "joined **by label only** with a hand pose of `keypoints_labeled.csv` (class digit "
        "mod 4), a fingertip trajectory of `point_history_labeled.csv` (class digit mod 4) "
        "and a sentence of `text_sentences/data.csv` (sentiment digit mod 2). The pairing is "
        "a construction for measuring cost, not a meaningful data set. Modalities are added "
        "in the order position, gesture, image, text, audio; concat fusion; one "
        "classification head (the digit).",
        "",
        benchlib.table(
            ["modalities", "parameters", "set-up (s)", "epoch (s)", "epoch, CPU (s)",
             "peak RSS (MB)", "cache (MB)"],
            [[" + ".join(r["modalities"]), f"{r['parameters']:,}", f"{r['setup_s']:.1f}",
              f"{r['loop_s']:.2f}", f"{r['loop_cpu_s']:.2f}", f"{r['peak_rss_mb']:.0f}",
              f"{r['cache_mb']:.1f}"] for r in mods],
        ),
        "",
        f"Rows (train/val/test): {_rows(mods[0])}. What each modality added to the epoch's "
        "CPU time: " + ", ".join(
            f"{r['modalities'][-1]} {r['loop_cpu_s'] - prev['loop_cpu_s']:+.2f} s"
            for prev, r in zip([{"loop_cpu_s": 0.0}, *mods[:-1]], mods, strict=True)
        ) + "; and to peak RSS: " + ", ".join(
            f"{r['modalities'][-1]} {r['peak_rss_mb'] - prev['peak_rss_mb']:+.0f} MB"
            for prev, r in zip(mods[:-1], mods[1:], strict=True)
        ) + ". The cost follows each encoder's work, not the number of modalities.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--five-rows", type=int, default=800,
                        help="rows of the five-modality table (default 800)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--write", type=Path, help="markdown file whose section to update")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_point(json.loads(args.child))))
        return 0
    meter = benchlib.LoadMeter()
    with tempfile.TemporaryDirectory(prefix="mmcore-bench-") as tmp:
        data = data_points(args.scales, Path(tmp) / "data", args.threads)
        mods = modality_points(args.five_rows, Path(tmp) / "modalities", args.threads)
    if mods is None:
        print(f"modality sweep skipped: {benchlib.SHARED} is absent", file=sys.stderr)
    text = report(data, mods, threads=args.threads, five_rows=args.five_rows, load=meter.stop())
    benchlib.publish(KEY, TITLE, text, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
