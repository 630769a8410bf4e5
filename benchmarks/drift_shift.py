"""A modality that shifts between sessions, and what input drift detection recovers
-> the ``drift_shift`` section of docs/results.md.

JapaneseVowels (aeon's official files) as two modalities: ``low`` = cepstrum coefficients 1-6,
``high`` = 7-12, one ``.npy`` each. Two test conditions: the TEST file as recorded (other
recording sessions than TRAIN: a real, mild shift), and the TEST file with a constructed shift of
``high`` alone, as a remounted sensor or another reference frame would give: sign flipped and
offset by 0.5. Validation is 20% of TRAIN (seeded). Every model is the defaults, nothing set
(the small-data recipe of docs/sequences.md: ``encoder: "auto"``, minirocket here; for two
modalities ``concat`` fusion and ``train.modality_loss`` 1).

Settings, per seed: each modality alone, the two fused with the defaults, fused with
``train.modality_loss=0`` (the default before), that with ``train.modality_dropout=0.25``, and
fused with ``late`` fusion; the fused runs are scored on TEST as they are and with the
modalities ``mmcore evaluate --hide-drifting`` flags hidden (:mod:`mmcore.drift`).

    python benchmarks/drift_shift.py            # seeds 0 1 2, writes docs/results.md
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

LATE = {"name": "late", "options": {}}
#: (label, modalities, train settings, fusion or None for the default)
SETTINGS: list[tuple[str, list[str], dict[str, Any], dict[str, Any] | None]] = [
    ("low alone", ["low"], {}, None), ("high alone", ["high"], {}, None),
    ("fused (the defaults)", ["low", "high"], {}, None),
    ("fused, modality_loss 0", ["low", "high"], {"modality_loss": 0.0}, None),
    ("fused, modality_loss 0, modality_dropout 0.25", ["low", "high"],
     {"modality_loss": 0.0, "modality_dropout": 0.25}, None),
    ("fused, late", ["low", "high"], {}, LATE),
]


#: test condition -> whether ``high`` is shifted in TEST
CONDITIONS = {"as recorded": False, "high shifted": True}


def write_table(root: Path, shifted: bool) -> Path:
    (root / "series").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for split in ("TRAIN", "TEST"):
        xs, ys = ucr.read_split("JapaneseVowels", split)
        for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
            low, high = x[:, :6], x[:, 6:]
            if split == "TEST" and shifted:
                high = -high + 0.5
            name = f"series/{split.lower()}{i}"
            np.save(root / f"{name}-low.npy", low)
            np.save(root / f"{name}-high.npy", high)
            where = split.lower() if split == "TEST" or rng.random() >= 0.2 else "validation"
            rows.append({"low": f"{name}-low.npy", "high": f"{name}-high.npy", "label": y,
                         "split": where})
    path = root / "table.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def spec(table: Path, modalities: list[str], seed: int, train: dict[str, Any],
         fusion: dict[str, Any] | None = None) -> dict[str, Any]:
    recipe = ucr.recipe_spec(table, seed)
    options = recipe["modalities"]["series"]
    recipe["modalities"] = {m: {**options, "column": m} for m in modalities}
    recipe["train"].update(train)
    if fusion is not None:
        recipe["fusion"] = fusion
    return recipe


def summary_baseline(table: Path, modalities: list[str]) -> float:
    """Logistic regression on per-channel summary features (mean, std, min, max of each
    sequence) of ``modalities``, trained on the train and validation rows, scored on test:
    the baseline a reviewer runs first, sharing no code with mmcore."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    with table.open(newline="") as fh:
        rows = list(csv.DictReader(fh))

    def features(row: dict[str, str]) -> np.ndarray:
        parts = []
        for m in modalities:
            x = np.load(table.parent / row[m])
            parts += [x.mean(0), x.std(0), x.min(0), x.max(0)]
        return np.concatenate(parts)

    train = [r for r in rows if r["split"] != "test"]
    test = [r for r in rows if r["split"] == "test"]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(np.stack([features(r) for r in train]), [r["label"] for r in train])
    pred = model.predict(np.stack([features(r) for r in test]))
    return float(np.mean(pred == np.array([r["label"] for r in test])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--work", type=Path, default=benchlib.REPO / "runs" / "drift_shift")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    benchlib.offline()
    import torch

    import mmcore
    from mmcore.drift import evaluate_drift

    torch.set_num_threads(1)
    start = time.time()
    rows: list[list[str]] = []
    flagged: dict[str, list[str]] = {}
    for condition, shifted in CONDITIONS.items():
        table = write_table(args.work / "data" / condition.replace(" ", "_"), shifted)
        acc: dict[str, list[float]] = {}
        for seed in args.seeds:
            for label, modalities, train, fusion in SETTINGS:
                out = (args.work / "runs" / condition.replace(" ", "_")
                       / label.replace(" ", "_").replace(",", "") / str(seed))
                trainer = mmcore.Trainer(mmcore.Spec(**spec(table, modalities, seed, train,
                                                            fusion)),
                                         output=out, overwrite=True, quiet=True, plots=False)
                trainer.fit()
                acc.setdefault(label, []).append(trainer.final_metrics["test"]["label.accuracy"])
                if len(modalities) > 1:
                    report = evaluate_drift(mmcore.load(out), "test", hide=True)
                    hidden = report["hidden_metrics"] or trainer.final_metrics["test"]
                    acc.setdefault(f"{label}, drifting hidden", []).append(
                        hidden["label.accuracy"])
                    flagged.setdefault(condition, []).append(", ".join(
                        f"{m} {e['score']:.2f}{' (flagged)' if e['drifting'] else ''}"
                        for m, e in report["modalities"].items()))
                print(condition, label, seed, f"{acc[label][-1]:.3f}", flush=True)
        rows += [[condition, k, f"{statistics.mean(v):.3f}", " / ".join(f"{a:.3f}" for a in v)]
                 for k, v in acc.items()]
        for label, modalities in (("logistic regression on summary features, low and high",
                                   ["low", "high"]),
                                  ("logistic regression on summary features, low", ["low"])):
            rows.append([condition, label, f"{summary_baseline(table, modalities):.3f}",
                         "(deterministic)"])
    body = "\n\n".join([
        f"Measured {benchlib.today()} on {benchlib.machine_line()}, 1 torch thread, seeds "
        f"{', '.join(map(str, args.seeds))}; {(time.time() - start) / 60:.1f} minutes. Written "
        "by `python benchmarks/drift_shift.py`.",
        "JapaneseVowels as two modalities (`low`: coefficients 1-6, `high`: 7-12), tested on "
        "the official TEST file (later sessions) as recorded, and with `high` shifted on "
        "purpose (sign flipped, +0.5), as a remounted sensor would be. Test accuracy; "
        "\"drifting hidden\" is the same model evaluated by `mmcore evaluate --hide-drifting` "
        "([evaluation.md](evaluation.md#input-drift)).",
        benchlib.table(["test split", "setting", "test accuracy", "per seed"], rows),
        *[f"Drift scores on TEST {condition} (threshold 0.5, validation level about 0.1), one "
          "line per fused run: " + "; ".join(lines) + "." for condition, lines in flagged.items()],
    ])
    if args.no_write:
        print(body)
    else:
        benchlib.write_section(ucr.RESULTS, "drift_shift",
                               "Input drift: a modality shifted between sessions", body)
        print(f"wrote {ucr.RESULTS}")


if __name__ == "__main__":
    main()
