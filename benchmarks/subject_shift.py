"""Unseen speakers, and what per-speaker standardisation recovers -> the ``subject_shift``
section of docs/results.md.

FSDD spoken digits (``../shared/data/av_digits``: 3,000 recordings, 6 speakers, 10 digits),
each clip as a log-mel sequence ``[T, 40]`` (frames of 32 ms every 10 ms; written as ``.npy``
by :func:`write_table`, nothing normalised). Leave one speaker out: train on five speakers,
test on the sixth, for every speaker. Every mmcore run uses minirocket, a linear head,
label smoothing 0.1 and epochs "auto" (the small-data recipe when this was measured) and differs
only in the gesture modality's normalisation:

* ``normalize: standard`` (the default): one set of statistics from the training speakers;
* ``standardize(by="speaker", new_groups="own")``: each training speaker by its own
  statistics, and the unseen speaker by the statistics of its own test recordings
  (transductive: inputs only, never labels).

Beside them, logistic regression on summary features (mean, std, min, max of each channel),
sharing no code with mmcore, on the raw log-mels and on per-speaker standardised ones (the
same transductive information the second setting gets).

    python benchmarks/subject_shift.py            # all 6 folds, writes docs/results.md
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
import ucr  # noqa: E402

FSDD = benchlib.SHARED / "av_digits"
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
OWN = [{"op": "standardize", "by": "speaker", "new_groups": "own"}]
#: (label, gesture options beyond the recipe's)
SETTINGS = [("recipe (normalize: standard)", {}),
            ("recipe + standardize(by=speaker, new_groups=own)",
             {"normalize": "none", "transforms": OWN})]


def log_mels(folder: Path) -> list[dict[str, Any]]:
    """Every clip's log-mel array (FSDD is 8 kHz), label and speaker."""
    import soundfile as sf
    from mmcore_plugin_audio.features import LogMel
    from mmcore_plugin_audio.options import AudioOptions

    logmel = LogMel(AudioOptions(sample_rate=8000, n_fft=256, hop_length=80, n_mels=40,
                                 normalize="none"))
    out = []
    with (FSDD / "pairs.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            samples, rate = sf.read(FSDD / row["audio"], dtype="float32")
            assert rate == 8000, row["audio"]
            name = f"{row['id']}.npy"
            np.save(folder / name, logmel(samples if samples.ndim == 1 else samples.mean(1)))
            out.append({"path": name, "label": row["label"], "speaker": row["speaker"]})
    return out


def write_table(folder: Path, rows: list[dict[str, Any]], test_speaker: str) -> Path:
    path = folder / f"test-{test_speaker}.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "label", "speaker", "split"])
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "split": "test" if row["speaker"] == test_speaker
                             else "train"})
    return path


def spec(table: Path, seed: int, options: dict[str, Any]) -> dict[str, Any]:
    recipe = ucr.minirocket_linear_spec(table, seed)
    recipe["modalities"]["series"]["options"].update(options)
    return recipe


def summary_baseline(folder: Path, rows: list[dict[str, Any]], test_speaker: str,
                     per_speaker: bool) -> float:
    """Logistic regression on per-channel mean, std, min and max, trained on the five
    training speakers and scored on the sixth; with ``per_speaker`` each speaker's
    log-mels are first standardised by that speaker's own statistics."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    arrays = [np.load(folder / r["path"]).astype(np.float64) for r in rows]
    if per_speaker:
        for speaker in SPEAKERS:
            idx = [i for i, r in enumerate(rows) if r["speaker"] == speaker]
            every = np.concatenate([arrays[i] for i in idx])
            mean, std = every.mean(0), every.std(0) + 1e-12
            for i in idx:
                arrays[i] = (arrays[i] - mean) / std
    features = np.stack([np.concatenate([x.mean(0), x.std(0), x.min(0), x.max(0)])
                         for x in arrays])
    labels = np.array([r["label"] for r in rows])
    test = np.array([r["speaker"] == test_speaker for r in rows])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    model.fit(features[~test], labels[~test])
    return float(np.mean(model.predict(features[test]) == labels[test]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speakers", nargs="+", default=list(SPEAKERS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=benchlib.REPO / "runs" / "subject_shift")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if not FSDD.is_dir():
        sys.exit(f"{FSDD} is absent: this benchmark reads the shared FSDD recordings")
    benchlib.offline()
    import torch

    torch.set_num_threads(1)
    start = time.time()
    folder = args.work / "data"
    folder.mkdir(parents=True, exist_ok=True)
    rows = log_mels(folder)
    acc: dict[str, list[float]] = {}
    for speaker in args.speakers:
        table = write_table(folder, rows, speaker)
        for i, (label, options) in enumerate(SETTINGS):
            out = args.work / "runs" / speaker / str(i)
            acc.setdefault(label, []).append(
                ucr.run_mmcore(spec(table, args.seed, options), out))
            print(speaker, label, f"{acc[label][-1]:.3f}", flush=True)
        for per_speaker in (False, True):
            label = ("logistic regression on summary features"
                     + (", per-speaker standardised" if per_speaker else ""))
            acc.setdefault(label, []).append(summary_baseline(folder, rows, speaker, per_speaker))
    header = ["setting", "mean", *[f"test: {s}" for s in args.speakers]]
    table_rows = [[label, f"{statistics.mean(v):.3f}", *[f"{a:.3f}" for a in v]]
                  for label, v in acc.items()]
    body = "\n\n".join([
        f"Measured {benchlib.today()} on {benchlib.machine_line()}, 1 torch thread, seed "
        f"{args.seed}; {(time.time() - start) / 60:.1f} minutes. Written by "
        "`python benchmarks/subject_shift.py`.",
        "FSDD spoken digits (`../shared/data/av_digits`, 3,000 recordings of 6 speakers) as "
        "log-mel sequences `[T, 40]`, read by the `gesture` modality. Leave one speaker out: "
        "trained on the other five (2,500 rows), tested on the speaker named in the column "
        "(500 rows). Both mmcore settings are minirocket with a linear head and label "
        "smoothing 0.1 (the [small-data](sequences.md#small-data) recipe when measured); the "
        "second standardises every speaker by "
        "its own statistics, the unseen one by those of its own test recordings "
        "([sequences.md](sequences.md#new-subjects)). The baselines train on the same rows.",
        benchlib.table(header, table_rows),
    ])
    if args.no_write:
        print(body)
    else:
        benchlib.write_section(ucr.RESULTS, "subject_shift",
                               "Unseen speakers: per-speaker standardisation", body)
        print(f"wrote {ucr.RESULTS}")


if __name__ == "__main__":
    main()
