"""Declared transforms through the whole path: fitted on the training split (per group where
asked), saved in the run folder, applied unchanged by ``mmcore.load(...).predict``."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from mmcore_plugin_gesture.modality import GestureModality
from mmcore_plugin_gesture.options import GestureOptions

import mmcore

RAW = [{"op": "envelope", "window": 4}, {"op": "standardize", "by": "signer"}]


def write_rows(path, n=48, seed=0):
    """Two signers whose recordings differ by a gain of 10; the class is which half of the
    sequence is active."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label, signer = i % 2, "ab"[(i // 2) % 2]
        x = rng.normal(size=(32, 2))
        x[16 * label: 16 * label + 16] *= 4.0
        x *= 10.0 if signer == "b" else 1.0
        split = "train" if i < 32 else ("validation" if i < 40 else "test")
        rows.append({"seq": json.dumps(x.round(4).tolist()), "signer": signer,
                     "label": label, "split": split})
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def modality(**options):
    return GestureModality("g", GestureOptions(**options))


def test_per_group_standardisation_fits_each_group_and_falls_back_for_new_ones():
    rng = np.random.default_rng(1)
    values = [rng.normal(size=(20, 2)) * (10 if i % 2 else 1) + (50 if i % 2 else 0)
              for i in range(10)]
    contexts = [{"signer": "b" if i % 2 else "a"} for i in range(10)]
    m = modality(transforms=[{"op": "standardize", "by": "signer"}], normalize="none")
    assert m.context_columns() == ["signer"]
    m.fit_rows(values, contexts)
    b = np.concatenate(values[1::2])
    out = m.preprocess_row(values[1], {"signer": "b"})
    np.testing.assert_allclose(out, (values[1] - b.mean(0)) / b.std(0), rtol=1e-5, atol=1e-5)
    every = np.concatenate(values)
    for context in ({"signer": "new"}, {"signer": None}, {}):
        out = m.preprocess_row(values[1], context)
        np.testing.assert_allclose(out, (values[1] - every.mean(0)) / every.std(0), rtol=1e-5)


def test_cache_key_changes_with_every_step():
    seqs = [np.random.default_rng(i).normal(size=(12, 2)) for i in range(4)]
    keys = set()
    for transforms in ([], [{"op": "diff"}], [{"op": "diff", "order": 2}],
                       [{"op": "envelope", "window": 3}], [{"op": "envelope", "window": 4}]):
        m = modality(transforms=transforms)
        m.fit(seqs)
        keys.add(m.fingerprint())
    assert len(keys) == 5


def test_unknown_group_column_is_reported_by_name(tmp_path):
    write_rows(tmp_path / "rows.csv")
    spec = mmcore.validate_spec({
        "data": {"path": str(tmp_path / "rows.csv"), "split_column": "split",
                 "cache_dir": str(tmp_path / "cache")},
        "modalities": {"g": {"plugin": "gesture", "column": "seq", "options": {
            "transforms": [{"op": "standardize", "by": "session"}]}}},
        "heads": {"label": {"target": "label"}},
    })
    with pytest.raises(mmcore.errors.DataError, match=r"'session' \(modalities.g.options\)"):
        mmcore.Trainer(spec, output=tmp_path / "run", quiet=True, plots=False).fit()


def test_a_run_saves_the_fitted_steps_and_predict_applies_them(tmp_path):
    rows = write_rows(tmp_path / "rows.csv")
    spec = mmcore.validate_spec({
        "data": {"path": str(tmp_path / "rows.csv"), "split_column": "split",
                 "cache_dir": str(tmp_path / "cache")},
        "modalities": {"g": {"plugin": "gesture", "column": "seq", "options": {
            "transforms": RAW, "normalize": "none", "hidden_size": 8, "tcn_channels": 8,
            "output_size": 8}}},
        "heads": {"label": {"target": "label", "options": {"hidden": [8]}}},
        "train": {"epochs": 2, "batch_size": 8, "progress": False},
    })
    mmcore.Trainer(spec, output=tmp_path / "run", quiet=True, plots=False).fit()
    state = json.loads((tmp_path / "run" / "modalities" / "g" / "gesture.json").read_text())
    fitted = state["pipeline"]["stats"][1]
    assert set(fitted["groups"]) == {"a", "b"}
    assert state["pipeline"]["transforms"][0]["op"] == "envelope"

    predictor = mmcore.load(tmp_path / "run", device="cpu")
    loaded = predictor.modalities["g"]
    reference = modality(transforms=RAW, normalize="none")
    train = [r for r in rows if r["split"] == "train"]
    reference.fit_rows([r["seq"] for r in train], [{"signer": r["signer"]} for r in train])
    for row in rows[-4:]:
        np.testing.assert_allclose(
            loaded.preprocess_row(row["seq"], {"signer": row["signer"]}),
            reference.preprocess_row(row["seq"], {"signer": row["signer"]}), rtol=1e-6)
    test = [{"seq": r["seq"], "signer": r["signer"]} for r in rows[-8:]]
    with_group = predictor.predict(test)
    without = predictor.predict([{"seq": r["seq"]} for r in rows[-8:]])  # falls back
    assert len(with_group) == len(without) == 8


def test_augmentation_trains_reproducibly_and_changes_the_run(tmp_path):
    write_rows(tmp_path / "rows.csv")

    def weights(augment, out):
        spec = mmcore.validate_spec({
            "data": {"path": str(tmp_path / "rows.csv"), "split_column": "split",
                     "cache_dir": str(tmp_path / "cache")},
            "modalities": {"g": {"plugin": "gesture", "column": "seq", "options": {
                "hidden_size": 8, "tcn_channels": 8, "output_size": 8, "augment": augment}}},
            "heads": {"label": {"target": "label", "options": {"hidden": [8]}}},
            "train": {"epochs": 2, "batch_size": 8, "progress": False},
        })
        mmcore.Trainer(spec, output=tmp_path / out, quiet=True, plots=False).fit()
        from safetensors.numpy import load_file

        return load_file(tmp_path / out / "model.safetensors")

    declared = {"jitter": 0.1, "scale": 0.1, "time_mask": 0.2}
    first, again, plain = weights(declared, "a"), weights(declared, "b"), weights({}, "c")
    assert all(np.array_equal(first[k], again[k]) for k in first)  # same seed, same draws
    assert not all(np.array_equal(first[k], plain[k]) for k in first)
