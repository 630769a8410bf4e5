"""Bad training rows end to end (issue 30): under ``data.bad_rows="skip"`` a run trains on the
rows that survive, and nothing after preprocessing (the balanced sampler, class weights, the
health checks, the modality report) sees a skipped row; under ``"raise"`` the error names the
row. The sequences are read by the gesture plugin, whose fit (train-split standardisation)
reads every training value first."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mmcore.data.fitting import fit_leaving_out
from mmcore.data.module import DataModule
from mmcore.errors import DataError
from mmcore.heads.imbalance import balanced_weights
from mmcore.model import build_modalities
from mmcore.plugins import get_registry
from mmcore.spec import validate_spec
from mmcore.train import Trainer

ROOT = Path(__file__).resolve().parents[1]
TRAIN_ROWS = 30


def _bad_npy(folder: Path, name: str, array: np.ndarray) -> str:
    np.save(folder / name, array)
    return name


#: kind of bad training row -> (column, what to put in the row given the data folder)
BAD = {
    "missing file": ("seq", lambda d: "gone.npy"),
    "undecodable file": ("seq", lambda d: (d / "junk.npy").write_bytes(b"junk") and "junk.npy"),
    "empty target": ("label", None),
    "wrong type": ("seq", lambda d: '[["a","b"]]'),
    "NaN": ("seq", lambda d: _bad_npy(d, "nan.npy", np.array([[0.0, np.nan]] * 6))),
    "inf": ("seq", lambda d: '[[0.0,1.0],[Infinity,0.5]]'),
    "wrong shape": ("seq", lambda d: _bad_npy(d, "three.npy", np.zeros((6, 3)))),
}
#: the training row each kind is written into
ROW = {kind: 3 + 4 * i for i, kind in enumerate(BAD)}


def write_table(folder: Path, kinds: list[str]) -> Path:
    """A gesture table: 30 train, 8 validation, 8 test rows of 2-channel sequences saved as
    .npy files (class ``b`` is rarer), with a bad train row of each of ``kinds``."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(TRAIN_ROWS + 16):
        label = "b" if i % 3 == 0 else "a"
        name = f"s{i}.npy"
        np.save(folder / name, rng.normal(size=(6, 2)) + (label == "b"))
        split = "train" if i < TRAIN_ROWS else "validation" if i < TRAIN_ROWS + 8 else "test"
        rows.append({"seq": name, "label": label, "split": split})
    for kind in kinds:
        column, value = BAD[kind]
        rows[ROW[kind]][column] = "" if value is None else value(folder)
    path = folder / "table.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["seq", "label", "split"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def spec_dict(table: Path, cache: Path, bad_rows: str, **train) -> dict:
    return {
        "name": "bad-rows",
        "data": {"path": str(table), "split_column": "split", "bad_rows": bad_rows,
                 "cache_dir": str(cache)},
        "modalities": {"g": {"plugin": "gesture", "column": "seq",
                             "options": {"channels": 2, "encoder": "tcn",
                                         "transforms": [{"op": "standardize"}]}}},
        "fusion": {"name": "concat", "options": {"size": 8}},
        "heads": {"y": {"kind": "classification", "target": "label"}},
        "train": {"epochs": 2, "batch_size": 8, "seed": 0, "progress": False, **train},
    }


def setup(tmp_path: Path, kinds: list[str], bad_rows: str) -> DataModule:
    spec = validate_spec(spec_dict(write_table(tmp_path / "data", kinds), tmp_path / "cache",
                                   bad_rows), registry=get_registry())
    dm = DataModule(spec, build_modalities(spec), progress=False)
    dm.setup()
    return dm


def test_fit_leaving_out_finds_the_values_a_fit_cannot_take():
    values = [1.0, float("nan"), 2.0, 3.0, float("inf"), 4.0, 5.0]
    fitted = []

    def fit(positions):
        chosen = [values[i] for i in positions]
        if not np.isfinite(chosen).all():
            raise ValueError("non-finite value")
        fitted[:] = chosen

    assert fit_leaving_out(fit, len(values)) == {1: "non-finite value", 4: "non-finite value"}
    assert fitted == [1.0, 2.0, 3.0, 4.0, 5.0]  # the last fit is on the good values

    def needs_two(positions):
        if len(positions) < 2:
            raise ValueError("needs two values")

    assert fit_leaving_out(needs_two, 3) == {}
    with pytest.raises(ValueError, match="needs two values"):  # no single value to blame
        fit_leaving_out(needs_two, 1)


@pytest.mark.parametrize("kind", list(BAD))
def test_raise_names_the_bad_training_row(tmp_path, kind):
    with pytest.raises(DataError) as info:
        setup(tmp_path, [kind], "raise")
    message = str(info.value)
    column = BAD[kind][0]
    assert f"split 'train', row {ROW[kind]} (row {ROW[kind]} of " in message, message
    assert f"table.csv), column {column!r}: " in message
    assert "data.bad_rows='skip'" in message


def test_skip_trains_on_the_rows_that_survive(tmp_path, capsys):
    torch.set_num_threads(1)
    table = write_table(tmp_path / "data", list(BAD))
    raw = spec_dict(table, tmp_path / "cache", "skip", sampler="balanced")
    raw["heads"]["y"]["options"] = {"class_weights": "balanced"}
    spec = validate_spec(raw, registry=get_registry())
    out = tmp_path / "run"
    trainer = Trainer(spec, output=out, plots=False, quiet=True)
    trainer.fit()

    listed = json.loads((out / "bad_rows.json").read_text())
    assert [(b["split"], b["row"], b["column"]) for b in listed] == [
        ("train", ROW[kind], BAD[kind][0]) for kind in BAD
    ]
    assert "skipped 7 bad row(s) (train: 7 of 30)" in capsys.readouterr().err
    kept = [i for i in range(TRAIN_ROWS) if i not in ROW.values()]
    assert trainer.data.num_rows("train") == len(kept)
    labels = ["b" if i % 3 == 0 else "a" for i in kept]
    assert trainer.data.class_codes("train").tolist() == [int(x == "b") for x in labels]
    # class weights are counted on the kept rows only
    options = trainer.data.head_options["y"]
    assert options["classes"] == ["a", "b"]
    assert options["fitted_class_weights"] == pytest.approx(balanced_weights(labels, ["a", "b"]))
    assert (out / "model.safetensors").exists() and (out / "health.json").exists()


def test_nan_in_a_training_array_under_raise_is_exit_2_naming_the_row(tmp_path):
    table = write_table(tmp_path / "data", ["NaN"])
    spec = tmp_path / "spec.py"
    spec.write_text(f"spec = {spec_dict(table, tmp_path / 'cache', 'raise')!r}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMCORE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-m", "mmcore", "train", str(spec), "--output", str(tmp_path / "run")],
        capture_output=True, text=True, cwd=ROOT, env=env,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"split 'train', row {ROW['NaN']} (row {ROW['NaN']} of {table}), column 'seq': " \
        "non-finite value nan at index (0, 1)" in result.stderr
