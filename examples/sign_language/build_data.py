"""Maintainer script: build the data bundled with this example from ../shared/data/hand_gestures.

Not needed to run the example (its output is committed). What it does, all seeded
(``random.Random(SEED)``), so a rerun gives the same files byte for byte:

1. **Real rows.** Draws ``ROWS`` rows of ``keypoint.csv`` (21 hand landmarks, 4 hand signs) and
   ``ROWS`` rows of ``point_history.csv`` (16-step fingertip trajectories, 4 motions), each
   uniformly at random without replacement. The two files come from different recordings and
   have different label sets: no row of one belongs with a row of the other.
2. **Pairing.** The i-th drawn keypoint row is paired with the i-th drawn trajectory row. The
   draws are independent, so the pairing is **random and independent of the labels**: a hand
   sign appears with every motion, and the motion says nothing about the sign. This is a
   construction of this example, not a property of the data. The pair's ``word`` is the
   combination ``<sign>+<motion>`` (16 classes), which needs both modalities.
3. **Derived image** (not real): the row's real keypoints drawn as a hand skeleton (MediaPipe's
   21-point topology) into a ``SIZE`` x ``SIZE`` grayscale PNG, ``images/<id>.png``.
4. **Synthetic caption** (not real): a short English sentence from templates. With probability
   ``P_TRUE`` it names the row's sign (one of several synonyms), with ``P_WRONG`` a sign drawn at
   random (which may happen to be the right one), else no sign at all; the same, independently,
   for the motion. It is only weakly informative, and never a copy of the label.
5. **Splits.** Within each ``word`` class, rows are shuffled and split 2/3 train, 1/6 validation,
   1/6 test (largest share first), so every split has every combination.

Keypoint coordinates are rounded to 4 decimals: upstream they are whole pixels divided by the
hand's largest offset (at most 383 px in this file), so distinct values are at least 0.0026
apart and rounding moves none by more than 0.00005. Trajectory values are copied unchanged.

    python examples/sign_language/build_data.py [--source ../shared/data/hand_gestures]
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
from collections import Counter, defaultdict
from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("MMCORE_SHARED_DATA") or HERE.parents[2] / "shared" / "data")
SEED = 0
ROWS = 2000
SIZE = 32
#: caption: probability of naming the true class, a random class; otherwise none
P_TRUE, P_WRONG = 0.45, 0.30

#: MediaPipe Hands' bone list: wrist 0; thumb 1-4; index 5-8; middle 9-12; ring 13-16; pinky 17-20
BONES = [
    (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (5, 9), (9, 10), (10, 11),
    (11, 12), (9, 13), (13, 14), (14, 15), (15, 16), (13, 17), (0, 17), (17, 18), (18, 19),
    (19, 20),
]
SIGN_WORDS = {
    "Open": ["an open hand", "a flat palm", "spread fingers", "an open palm"],
    "Close": ["a fist", "a closed hand", "a clenched hand", "curled fingers"],
    "Pointer": ["a pointing finger", "the index finger out", "a pointing hand", "one finger up"],
    "OK": ["an ok sign", "a ring of thumb and finger", "the okay gesture", "a circle with fingers"],
}
MOTION_WORDS = {
    "Stop": ["held still", "not moving", "kept in place", "steady"],
    "Clockwise": ["turning clockwise", "circling to the right", "going round clockwise"],
    "Counter Clockwise": [
        "turning counterclockwise", "circling to the left", "going round anticlockwise",
    ],
    "Move": ["moving across", "sliding sideways", "drifting along", "travelling"],
}
OPENERS = ["", "", "the signer shows", "I see", "video:", "looks like", "frame shows", "maybe"]
FILLERS = [
    "", "", "", "in poor light", "near the camera", "partly hidden", "hard to tell", "quickly",
]


def read_labels(path: Path) -> list[str]:
    """Class names, one per line; the line number is the label id (the file has a BOM, CRLF)."""
    return [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line]


def read_rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return [row for row in csv.reader(f) if row]


def caption(rng: random.Random, sign: str, motion: str) -> str:
    """A noisy description of the pair; see the module docstring for the noise model."""

    def mention(words: dict[str, list[str]], true: str) -> str:
        draw = rng.random()
        if draw < P_TRUE:
            return rng.choice(words[true])
        if draw < P_TRUE + P_WRONG:
            return rng.choice(words[rng.choice(sorted(words))])
        return ""

    hand, move = mention(SIGN_WORDS, sign), mention(MOTION_WORDS, motion)
    body = {
        (True, True): f"{hand}, {move}",
        (True, False): f"{hand}",
        (False, True): f"a hand {move}",
        (False, False): "a hand gesture",
    }[bool(hand), bool(move)]
    parts = [rng.choice(OPENERS), body, rng.choice(FILLERS)]
    return " ".join(p for p in parts if p).strip()


def render(points: list[float], path: Path) -> None:
    """Draw 21 (x, y) landmarks as a skeleton image, the hand's bounding box centred and
    scaled to fill the frame (aspect kept, a 10% margin)."""
    scale = 4  # drawn large, then downsampled with antialiasing
    big = SIZE * scale
    image = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(image)
    xs, ys = points[0::2], points[1::2]
    span = max(max(xs) - min(xs), max(ys) - min(ys), 1e-6)
    fit = 0.8 * (big - 1) / span
    cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    xy = [((x - cx) * fit + big / 2, (y - cy) * fit + big / 2) for x, y in zip(xs, ys, strict=True)]
    for a, b in BONES:
        draw.line([xy[a], xy[b]], fill=255, width=scale)
    for x, y in xy:
        r = scale
        draw.ellipse([x - r, y - r, x + r, y + r], fill=255)
    image.resize((SIZE, SIZE), Image.Resampling.BOX).save(path, optimize=True)


def build(source: Path, out: Path) -> list[dict]:
    """Write ``out/signs.csv``, ``out/images/`` and ``out/LICENSE`` from ``source`` (the
    hand_gestures folder); returns the rows written."""
    signs = read_labels(source / "keypoint_classifier_label.csv")
    motions = read_labels(source / "point_history_classifier_label.csv")
    keypoints = read_rows(source / "keypoint.csv")
    histories = read_rows(source / "point_history.csv")

    rng = random.Random(SEED)
    kp_rows = rng.sample(range(len(keypoints)), ROWS)
    ph_rows = rng.sample(range(len(histories)), ROWS)

    if (out / "images").exists():
        shutil.rmtree(out / "images")
    (out / "images").mkdir(parents=True)
    rows = []
    for i, (k, h) in enumerate(zip(kp_rows, ph_rows, strict=True)):
        sign = signs[int(keypoints[k][0])]
        motion = motions[int(histories[h][0])]
        points = [round(float(v), 4) for v in keypoints[k][1:]]
        trajectory = histories[h][1:]
        if len(points) != 42 or len(trajectory) != 32:
            raise SystemExit(f"unexpected row length: keypoint.csv line {k + 1} or "
                             f"point_history.csv line {h + 1}")
        row_id = f"s{i:04d}"
        render(points, out / "images" / f"{row_id}.png")
        row = {
            "id": row_id, "sign": sign, "motion": motion, "word": f"{sign}+{motion}",
            "image": f"images/{row_id}.png", "caption": caption(rng, sign, motion),
            "keypoint_line": k + 1, "history_line": h + 1,
        }
        row.update({f"{a}{j}": f"{points[2 * j + (a == 'y')]:g}"
                    for j in range(21) for a in ("x", "y")})
        row.update({f"t{a}{j}": trajectory[2 * j + (a == "y")]
                    for j in range(16) for a in ("x", "y")})
        rows.append(row)

    by_word: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_word[row["word"]].append(row)
    for word in sorted(by_word):
        group = by_word[word]
        rng.shuffle(group)
        held = round(len(group) / 6)
        for j, row in enumerate(group):
            row["split"] = "test" if j < held else "validation" if j < 2 * held else "train"

    fields = ["id", "split", "sign", "motion", "word", "image", "caption",
              "keypoint_line", "history_line"]
    fields += [c for c in rows[0] if c not in fields]
    with open(out / "signs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    shutil.copyfile(source / "LICENSE", out / "LICENSE")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", type=Path, default=SHARED / "hand_gestures")
    parser.add_argument("--out", type=Path, default=HERE / "data")
    args = parser.parse_args()
    rows = build(args.source, args.out)
    splits = Counter(row["split"] for row in rows)
    print(f"wrote {len(rows)} rows to {args.out / 'signs.csv'} ({dict(sorted(splits.items()))}) "
          f"and {len(rows)} images")


if __name__ == "__main__":
    main()
