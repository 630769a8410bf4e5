"""Maintainer script: copy the av_digits subset bundled with this example from ../shared/data.

Not needed to run the example (its output is committed). Takes a balanced subset of the
official splits — per digit, N train / validation / test rows drawn with ``random.Random(0)`` — and
stores the audio as FLAC (lossless; about 40% smaller than WAV) and the images as PNG, unchanged.

    python examples/av_digits/bundle_subset.py [--source ../shared/data/av_digits]
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
from collections import defaultdict
from pathlib import Path

import soundfile as sf

PER_DIGIT = {"train": 50, "validation": 10, "test": 20}
HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", type=Path, default=HERE.parents[2] / "shared/data/av_digits")
    args = parser.parse_args()
    out = HERE / "data"
    if out.exists():
        shutil.rmtree(out)
    (out / "audio").mkdir(parents=True)
    (out / "images").mkdir()
    groups: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    with open(args.source / "pairs.csv", newline="") as f:
        for row in csv.DictReader(f):
            groups[row["split"], row["label"]].append(row)
    rng = random.Random(0)
    chosen = []
    for (split, _), group in sorted(groups.items()):
        chosen += rng.sample(group, PER_DIGIT[split])
    rows = []
    for row in sorted(chosen, key=lambda r: r["id"]):
        audio = f"audio/{row['id']}.flac"
        data, rate = sf.read(args.source / row["audio"], dtype="int16")
        sf.write(out / audio, data, rate, format="FLAC", subtype="PCM_16")
        shutil.copyfile(args.source / row["image"], out / row["image"])
        rows.append(
            {
                "id": row["id"],
                "label": row["label"],
                "split": row["split"],
                "image": row["image"],
                "audio": audio,
                "speaker": row["speaker"],
            }
        )
    with open(out / "pairs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {out}")


if __name__ == "__main__":
    main()
