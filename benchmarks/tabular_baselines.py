"""Tables with a fixed split column, and classical baselines on them, for results.py's
``tabular`` group. The baselines share no code with mmcore: scikit-learn on the same rows.

* :func:`with_split` copies a CSV with a stratified, seeded ``split`` column (65/10/25), so
  mmcore and the baselines train and test on the same rows;
* :func:`breast_cancer_csv` writes scikit-learn's bundled breast cancer table (569 rows, 30
  numeric features, read from the installed package: nothing is downloaded);
* :func:`baselines` fits logistic regression (standardised inputs) and histogram gradient
  boosting on the train rows and scores them on the test rows, once per seed.
"""

from __future__ import annotations

import csv
import statistics
from collections.abc import Sequence
from pathlib import Path

import numpy as np

FRACTIONS = {"train": 0.65, "validation": 0.10, "test": 0.25}


def with_split(source: Path, out: Path, target: str, seed: int = 0) -> Path:
    """``source`` with a ``split`` column, stratified by ``target``."""
    with source.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        by_class.setdefault(row[target], []).append(i)
    for members in by_class.values():
        order = rng.permutation(members)
        n_val = round(FRACTIONS["validation"] * len(order))
        n_test = round(FRACTIONS["test"] * len(order))
        for k, i in enumerate(order):
            rows[i]["split"] = ("validation" if k < n_val else "test" if k < n_val + n_test
                                else "train")
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*rows[0].keys()])
        writer.writeheader()
        writer.writerows(rows)
    return out


def breast_cancer_csv(out: Path) -> tuple[Path, list[str]]:
    """scikit-learn's bundled breast cancer data as a CSV (features f0..f29, ``label``)."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    names = [f"f{i}" for i in range(data.data.shape[1])]
    raw = out.with_name(out.stem + "-raw.csv")
    raw.parent.mkdir(parents=True, exist_ok=True)
    with raw.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*names, "label"])
        for x, y in zip(data.data, data.target, strict=True):
            writer.writerow([*(f"{v:.6g}" for v in x), data.target_names[y]])
    return with_split(raw, out, "label"), names


def baselines(table: Path, features: Sequence[str], target: str,
              seeds: Sequence[int]) -> dict[str, list[float]]:
    """Test accuracy of each baseline per seed, trained on the ``train`` rows."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    with table.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    parts = {s: [r for r in rows if r["split"] == s] for s in ("train", "test")}
    x = {s: np.array([[float(r[c]) for c in features] for r in p]) for s, p in parts.items()}
    y = {s: np.array([r[target] for r in p]) for s, p in parts.items()}
    out: dict[str, list[float]] = {"logistic regression": [], "gradient boosting": []}
    for seed in seeds:
        models = {
            "logistic regression": make_pipeline(
                StandardScaler(), LogisticRegression(max_iter=5000, random_state=seed)),
            "gradient boosting": HistGradientBoostingClassifier(random_state=seed),
        }
        for name, model in models.items():
            model.fit(x["train"], y["train"])
            out[name].append(float((model.predict(x["test"]) == y["test"]).mean()))
    return out


def describe(figures: dict[str, list[float]]) -> str:
    """``"logistic regression 0.951 ± 0.000; gradient boosting 0.960 ± 0.004"``."""
    parts = []
    for name, values in figures.items():
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        parts.append(f"{name} {statistics.mean(values):.3f} ± {sd:.3f}")
    return "; ".join(parts) + " (scikit-learn, same split, measured here)"
