"""Train on a table with numeric, categorical and missing cells; predict new rows from the run
folder, unknown categories and missing cells included."""

from __future__ import annotations

import csv

import numpy as np
import torch

import mmcore


def test_train_then_predict_with_unknown_categories_and_missing_cells(tmp_path):
    rng = np.random.default_rng(0)
    with open(tmp_path / "rows.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["size", "colour", "weight", "label"])
        for i in range(120):
            colour = ["red", "blue", "green"][i % 3]
            size = rng.normal(10 if colour == "red" else 0, 1)
            weight = "" if i % 7 == 0 else f"{rng.normal(5, 1):.3f}"   # missing cells
            writer.writerow([f"{size:.3f}", colour, weight, "big" if colour == "red" else "small"])
    spec = {
        "name": "table",
        "data": {"path": str(tmp_path / "rows.csv"), "cache_dir": str(tmp_path / "cache"),
                 "split": {"validation": 0.2, "test": 0.2, "seed": 0}},
        "modalities": {"t": {"plugin": "tabular", "column": ["size", "colour", "weight"],
                             "options": {"hidden": [16], "size": 16}}},
        "heads": {"label": {"target": "label"}},
        "train": {"epochs": 15, "batch_size": 16, "lr": 1e-2, "seed": 0, "progress": False,
                  "callbacks": []},
    }
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        final = mmcore.Trainer(spec, output=tmp_path / "run", quiet=True, plots=False,
                               report=False).fit()
        predictor = mmcore.load(tmp_path / "run")
        out = predictor.predict([
            {"size": 10.5, "colour": "red", "weight": 5.0},
            {"size": -0.2, "colour": "purple", "weight": None},   # unknown colour, no weight
            {"size": None, "colour": None, "weight": 4.0},        # only one cell present
        ])
    finally:
        torch.set_num_threads(before)
    assert final["test"]["label.accuracy"] >= 0.9
    assert [r["label"]["label"] for r in out[:2]] == ["big", "small"]
    assert out[2]["label"]["label"] in {"big", "small"}
    state = (tmp_path / "run" / "modalities" / "t" / "table.json").read_text()
    assert '"colour"' in state and '"red"' in state
