"""``standardize(by=..., new_groups="own")``: a signer the training split lacks is standardised
with its own rows' statistics, in evaluation, ``predict`` and the export runtime alike; the
statistics are never saved with the run."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from mmcore_plugin_gesture.modality import GestureModality
from mmcore_plugin_gesture.options import GestureOptions

import mmcore
from mmcore.sequence import SequencePipeline

OWN = [{"op": "standardize", "by": "signer", "new_groups": "own"}]


def modality(transforms=OWN):
    return GestureModality("g", GestureOptions(transforms=transforms, normalize="none"))


def recordings(n, offset, gain, seed):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(16, 2)) * gain + offset for _ in range(n)]


def test_a_new_group_gets_its_own_statistics_a_known_one_keeps_the_fitted_ones():
    a, b = recordings(6, 0.0, 1.0, 0), recordings(6, 5.0, 3.0, 1)
    m = modality()
    m.fit_rows(a + b, [{"signer": "a"}] * 6 + [{"signer": "b"}] * 6)
    c = recordings(5, np.array([40.0, -7.0]), np.array([9.0, 0.5]), 2)
    every = np.concatenate(a + b)
    before = m.preprocess_row(c[0], {"signer": "c"})  # not adapted yet: the whole split's
    np.testing.assert_allclose(before, (c[0] - every.mean(0)) / every.std(0), rtol=1e-5, atol=1e-5)

    m.adapt(c + a[:2], [{"signer": "c"}] * 5 + [{"signer": "a"}] * 2)
    own = np.concatenate(c)
    np.testing.assert_allclose(m.preprocess_row(c[0], {"signer": "c"}),
                               (c[0] - own.mean(0)) / own.std(0), rtol=1e-5, atol=1e-5)
    fitted_a = np.concatenate(a)  # a's rows in the call change nothing: a was fitted
    np.testing.assert_allclose(m.preprocess_row(a[0], {"signer": "a"}),
                               (a[0] - fitted_a.mean(0)) / fitted_a.std(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(m.preprocess_row(c[0], {}),  # no group: the whole split's
                               (c[0] - every.mean(0)) / every.std(0), rtol=1e-5, atol=1e-5)
    saved = m.pipeline.state()["stats"][0]["groups"]  # transductive state is never saved
    assert set(saved) == {"a", "b"}


def test_the_default_falls_back_to_the_training_statistics():
    m = modality([{"op": "standardize", "by": "signer"}])
    assert not m.adapts()
    a = recordings(4, 0.0, 1.0, 0)
    m.fit_rows(a, [{"signer": "a"}] * 4)
    c = recordings(3, 30.0, 1.0, 1)
    m.adapt(c, [{"signer": "c"}] * 3)  # nothing to adapt
    every = np.concatenate(a)
    np.testing.assert_allclose(m.preprocess_row(c[0], {"signer": "c"}),
                               (c[0] - every.mean(0)) / every.std(0), rtol=1e-5, atol=1e-5)


def test_new_groups_own_needs_a_group_column():
    with pytest.raises(ValueError, match="new_groups='own' needs 'by'"):
        SequencePipeline([{"op": "standardize", "new_groups": "own"}])


def test_a_state_saved_before_the_option_existed_still_loads():
    old = SequencePipeline([{"op": "standardize", "by": "signer"}])
    old.fit(lambda: recordings(3, 0.0, 1.0, 0), [{"signer": "a"}] * 3)
    state = old.state()
    del state["transforms"][0]["new_groups"]  # as written by an earlier mmcore
    new = SequencePipeline([{"op": "standardize", "by": "signer"}])
    new.load_state(state)
    assert new.fitted


def write_signers(path, per_signer=24):
    """Six signers, each recorded with its own large per-channel offset and gain; the class is
    whether channel 0 sits above or below the signer's own level, which only per-signer
    statistics reveal. Signers e and f (the test split) sit far from every training signer."""
    rng = np.random.default_rng(0)
    offsets = {"a": 0, "b": 8, "c": -8, "d": 4, "e": 30, "f": -30}
    rows = []
    for signer, offset in offsets.items():
        gain = 1.0 + rng.random() * 2.0
        for i in range(per_signer):
            label = i % 2
            x = rng.normal(size=(12, 2)) * 0.3
            x[:, 0] += 1.0 if label else -1.0
            x = (x + offset) * gain
            split = {"e": "test", "f": "test", "d": "validation"}.get(signer, "train")
            rows.append({"seq": json.dumps(x.round(4).tolist()), "signer": signer,
                         "label": label, "split": split})
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def train(tmp_path, new_groups, out):
    spec = mmcore.validate_spec({
        "data": {"path": str(tmp_path / "rows.csv"), "split_column": "split",
                 "cache_dir": str(tmp_path / "cache")},
        "modalities": {"g": {"plugin": "gesture", "column": "seq", "options": {
            "transforms": [{"op": "standardize", "by": "signer", "new_groups": new_groups}],
            "normalize": "none", "encoder": "reference", "hidden_size": 8, "pool": "mean"}}},
        "heads": {"label": {"target": "label", "options": {"hidden": []}}},
        "train": {"epochs": 6, "batch_size": 8, "lr": 0.02, "progress": False},
    })
    return mmcore.Trainer(spec, output=tmp_path / out, quiet=True, plots=False).fit()


@pytest.mark.slow
def test_unseen_signers_are_recognised_only_with_their_own_statistics(tmp_path):
    rows = write_signers(tmp_path / "rows.csv")
    own = train(tmp_path, "own", "own")
    fallback = train(tmp_path, "training", "training")
    assert own["test"]["label.accuracy"] >= 0.9
    assert fallback["test"]["label.accuracy"] <= 0.6  # e and f sit outside the training range

    predictor = mmcore.load(tmp_path / "own", device="cpu")
    test = [r for r in rows if r["split"] == "test"]
    given = [{"seq": r["seq"], "signer": r["signer"]} for r in test]
    got = [p["label"]["label"] for p in predictor.predict(given)]
    accuracy = np.mean([str(g) == str(r["label"]) for g, r in zip(got, test, strict=True)])
    assert accuracy == pytest.approx(own["test"]["label.accuracy"])
    alone = predictor.predict(given[:1])  # one row is a group of one: its own statistics
    assert len(alone) == 1

    pytest.importorskip("onnxruntime", reason="the export check needs mmcore-torch[export]")
    from mmcore.inference import runtime
    from mmcore.inference.export import export_run

    bundle = export_run(tmp_path / "own", tmp_path / "bundle")
    served = [p["label"]["label"] for p in runtime.load(bundle).predict(given)]
    assert served == got
