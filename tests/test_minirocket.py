"""The minirocket encoder: its features against aeon's MiniRocket as an oracle (multivariate,
univariate, variable length in one padded batch), its fitting, and a trained run that reloads,
predicts and exports the same."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import mmcore
from mmcore.sequence.minirocket import (
    NUM_KERNELS,
    MiniRocketFeatures,
    MiniRocketParameters,
    fit_dilations,
    fit_minirocket,
    transform_arrays,
)

#: the oracle tests and the GunPoint run need aeon (its MiniRocket, its bundled UCR/UEA sets)
needs_aeon = pytest.mark.skipif(importlib.util.find_spec("aeon") is None,
                                reason="aeon is not installed (pip install mmcore-torch[test])")


def load_aeon(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """One of aeon's bundled sets, ``"gunpoint"`` or ``"basic_motions"``: ``aeon.datasets`` is
    imported here, not at collection (it brings numba, about 2 s of every test process)."""
    from aeon import datasets

    return getattr(datasets, f"load_{name}")(split=split)


def aeon_minirocket():
    """aeon's MiniRocket class, imported by the oracle tests only (with scikit-learn, about 2 s
    of every test process's collection otherwise)."""
    from aeon.transformations.collection.convolution_based import MiniRocket

    return MiniRocket


def from_aeon(fitted: Any, channels: int) -> MiniRocketParameters:
    """aeon's fitted parameters as ours (feature standardisation left at identity)."""
    per_combination, indices, dilations, per_dilation, biases = fitted.parameters
    groups, start = [], 0
    for n in per_combination:
        groups.append(sorted(int(c) for c in indices[start : start + n]))
        start += n
    n = len(biases)
    return MiniRocketParameters(channels, [int(d) for d in dilations],
                                [int(f) for f in per_dilation], groups,
                                [float(b) for b in biases], [0.0] * n, [1.0] * n)


def padded(arrays: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """``[T, C]`` arrays -> a zero-padded ``[B, T_max, C]`` batch and its step mask."""
    t = max(len(a) for a in arrays)
    x = torch.zeros(len(arrays), t, arrays[0].shape[1])
    mask = torch.zeros(len(arrays), t, dtype=torch.bool)
    for i, a in enumerate(arrays):
        x[i, : len(a)] = torch.from_numpy(a)
        mask[i, : len(a)] = True
    return x, mask


def assert_features_match(ours: np.ndarray, theirs: np.ndarray, length: int,
                          params: MiniRocketParameters) -> None:
    # Both sum the same float32 terms in another order, so an output that lands on a bias
    # (a quantile of a training sequence's own outputs) can compare the other way: one step
    # of one feature (1 / the steps it averages over), rarely.
    diff = np.abs(ours - theirs)
    assert (diff > 1e-6).mean() < 1e-3
    assert diff.max() <= 1.0 / (length - 8 * max(params.dilations)) + 1e-6


@needs_aeon
def test_multivariate_features_equal_aeons() -> None:
    x, _ = load_aeon("basic_motions", "train")  # [40, 6, 100]
    fitted = aeon_minirocket()(random_state=0).fit(x)
    params = from_aeon(fitted, 6)
    ours = MiniRocketFeatures(params)(*padded(list(x.transpose(0, 2, 1))))
    assert_features_match(ours.numpy(), fitted.transform(x), 100, params)


@needs_aeon
@pytest.mark.parametrize("loader, channels, shortest", [("gunpoint", 1, 70),
                                                          ("basic_motions", 6, 60)])
def test_variable_length_batch_gives_each_sequences_own_features(loader, channels,
                                                                 shortest) -> None:
    from aeon.transformations.collection.convolution_based._minirocket import (
        _static_transform_multi,
        _static_transform_uni,
    )

    MiniRocket = aeon_minirocket()
    x, _ = load_aeon(loader, "train")
    rng = np.random.default_rng(0)
    lengths = rng.integers(shortest, x.shape[2] + 1, size=12)
    seqs = [np.ascontiguousarray(x[i, :, :n].T, dtype=np.float32) for i, n in enumerate(lengths)]
    # fitted on the shortest length, so aeon's dilations fit every sequence alone
    fitted = MiniRocket(n_kernels=84 * 20, random_state=1).fit(x[:, :, :shortest])
    params = from_aeon(fitted, channels)
    ours = MiniRocketFeatures(params)(*padded(seqs)).numpy()
    for i, seq in enumerate(seqs):
        # aeon's transform of this sequence alone, at its own length (its public transform
        # refuses a length other than the fitted one)
        one = np.ascontiguousarray(seq.T[None], dtype=np.float32)
        if channels == 1:
            alone = _static_transform_uni(one[:, 0], fitted.parameters, MiniRocket._indices)[0]
        else:
            alone = _static_transform_multi(one, fitted.parameters, MiniRocket._indices)[0]
        assert_features_match(ours[i], alone, len(seq), params)


@needs_aeon
def test_fitting_follows_minirockets_layout_and_is_seeded() -> None:
    x, _ = load_aeon("basic_motions", "train")
    seqs = [np.ascontiguousarray(s.T, dtype=np.float32) for s in x]
    params = fit_minirocket(seqs, num_features=84 * 30, seed=3)
    fitted = aeon_minirocket()(n_kernels=84 * 30, random_state=3).fit(x)
    _, _, dilations, per_dilation, biases = fitted.parameters
    assert params.dilations == dilations.tolist()
    assert params.features_per_dilation == per_dilation.tolist()
    assert params.num_features == len(biases) == 84 * 30
    assert len(params.channels) == NUM_KERNELS * len(dilations)
    assert all(1 <= len(c) <= 6 for c in params.channels)
    # the biases are quantiles of the same kind of outputs as aeon's
    ours, theirs = np.array(params.biases), np.asarray(biases)
    assert abs(np.median(ours) - np.median(theirs)) < 0.5 * np.std(theirs)
    # the fitted standardisation centres the training features
    feats = MiniRocketFeatures(params)(*padded(seqs)).numpy()
    z = (feats - np.array(params.mean)) / np.array(params.scale)
    assert np.abs(z.mean(axis=0)).max() < 1e-4
    again = fit_minirocket(seqs, num_features=84 * 30, seed=3)
    assert again == params
    assert MiniRocketParameters.from_state(json.loads(json.dumps(params.state()))) == params


def test_dilations_for_short_and_long_sequences() -> None:
    assert fit_dilations(9, 840, 32) == ([1], [10])
    dilations, per = fit_dilations(1000, 10_000, 32)
    assert dilations[0] == 1 and dilations[-1] == 124 and sum(per) == 119


def test_malformed_state_is_refused_with_what_was_expected() -> None:
    params = fit_minirocket([np.random.default_rng(0).normal(size=(30, 2)).astype(np.float32)],
                            num_features=84)
    state = params.state()
    state["biases"] = state["biases"][:-1]
    with pytest.raises(ValueError, match="84 biases"):
        MiniRocketParameters.from_state(state)
    with pytest.raises(ValueError, match="must be an object"):
        MiniRocketParameters.from_state([1, 2])


# -- a run ---------------------------------------------------------------------------------------
def write_table(folder: Path) -> Path:
    """GunPoint's official files as one ``.npy`` per sequence, some cut short (lengths vary)."""
    (folder / "series").mkdir(parents=True)
    rng = np.random.default_rng(0)
    with (folder / "table.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "split"])
        for split in ("train", "test"):
            x, y = load_aeon("gunpoint", split)
            for i in range(0, len(y), 1 if split == "train" else 3):
                n = int(rng.integers(100, 151))
                np.save(folder / "series" / f"{split}{i}.npy", x[i, 0, :n, None])
                writer.writerow([f"series/{split}{i}.npy", y[i], split])
    return folder / "table.csv"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path]:
    if importlib.util.find_spec("aeon") is None:
        pytest.skip("the GunPoint run reads aeon's bundled set: aeon is not installed")
    folder = tmp_path_factory.mktemp("gunpoint")
    table = write_table(folder)
    spec = mmcore.Spec(
        name="gunpoint",
        data={"path": str(table), "split_column": "split"},
        modalities={"series": {"plugin": "gesture", "column": "path",
                               "options": {"encoder": "minirocket",
                                           "minirocket_features": 84 * 12}}},
        heads={"label": {"kind": "classification", "target": "label"}},
        train={"epochs": 15, "progress": False},
    )
    trainer = mmcore.Trainer(spec, output=folder / "run", quiet=True, plots=False, report=False)
    trainer.fit()
    assert trainer.final_metrics["test"]["label.accuracy"] >= 0.85
    return folder / "run", folder


def test_a_trained_run_reloads_with_its_fitted_kernels(run) -> None:
    run_dir, folder = run
    state = json.loads(next((run_dir / "modalities").rglob("gesture.json")).read_text())
    assert state["minirocket"]["dilations"][0] == 1
    rows = [{"path": f"series/test{i}.npy"} for i in (0, 3, 6)]
    predictor = mmcore.load(run_dir)
    first = predictor.predict(rows, root=folder)
    again = mmcore.load(run_dir).predict(rows, root=folder)
    assert [r["label"]["probability"] for r in first] == [r["label"]["probability"] for r in again]


def test_a_minirocket_run_exports_faithfully(run, tmp_path) -> None:
    pytest.importorskip("onnxruntime", reason="export needs mmcore-torch[export]")
    from mmcore.inference import runtime
    from mmcore.inference.export import export_run

    run_dir, folder = run
    bundle = export_run(run_dir, tmp_path / "bundle")
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["parity"]["max_abs_diff"] <= 1e-4
    rows = [{"path": f"series/test{i}.npy"} for i in range(0, 30, 3)]
    expected = mmcore.load(run_dir).predict(rows, root=folder)
    got = runtime.load(bundle).predict(rows, root=folder, batch_size=4)
    for a, b in zip(got, expected, strict=True):
        assert a["label"]["label"] == b["label"]["label"]
        assert abs(a["label"]["probability"] - b["label"]["probability"]) < 1e-4


def test_remembered_features_are_the_computed_ones() -> None:
    from mmcore.batch import ModalityBatch
    from mmcore.encoder import recurring_inputs
    from mmcore.sequence.minirocket import MiniRocketEncoder

    rng = np.random.default_rng(0)
    seqs = [rng.normal(size=(n, 2)).astype(np.float32) for n in (40, 25, 33)]
    enc = MiniRocketEncoder(fit_minirocket(seqs, num_features=168), output_size=4)

    def batch(items):
        x, mask = padded(items)
        return ModalityBatch(x, torch.ones(len(items), dtype=torch.bool), mask)

    with torch.no_grad():
        fresh = enc.rocket(*padded(seqs))
        first = enc.ppv(*padded(seqs))  # computed, then remembered
        assert len(enc._cache) == 3
        mixed = enc.ppv(*padded([seqs[1], seqs[0] + 1, seqs[2]]))  # two remembered, one new
        torch.testing.assert_close(first, fresh)
        torch.testing.assert_close(mixed[[0, 2]], fresh[[1, 2]])
        torch.testing.assert_close(mixed[1], enc.rocket(*padded([seqs[0] + 1]))[0])
        enc.eval()  # no dropout draws below; eval mode reads the memory but does not grow it
        out = enc(batch(seqs)).values
        other = [seqs[0] * 2]
        enc(batch(other))
        assert len(enc._cache) == 4  # three, plus the one computed in training mode above
        with recurring_inputs():  # the trainer's validation: its rows come every epoch
            enc(batch(other))
        assert len(enc._cache) == 5
        enc.load_state_dict(enc.state_dict())  # the same kernels and biases: kept
        enc(batch(seqs))
        assert len(enc._cache) == 5
        original = {k: v.clone() for k, v in enc.state_dict().items()}
        changed = {**original, "rocket.biases": original["rocket.biases"] + 1}
        enc.load_state_dict(changed)  # other biases give other features: forgotten
        torch.testing.assert_close(enc.ppv(*padded(seqs)), enc.rocket(*padded(seqs)))
        assert not enc._cache
        enc.load_state_dict(original)
        torch.testing.assert_close(enc(batch(seqs)).values, out)
        enc.train()
        enc.ppv(*padded(seqs))
        assert len(enc._cache) == 3
        enc.rocket.biases.add_(0.5)  # changed in place, not through load_state_dict
        torch.testing.assert_close(enc.ppv(*padded(seqs)), enc.rocket(*padded(seqs)))
        enc.rocket.biases.sub_(0.5)
        enc.ppv(*padded(seqs))
        kept = dict(enc._cache)
        enc.rocket.biases.copy_(enc.rocket.biases.clone())  # a copy of the same values (ema)
        enc.ppv(*padded(seqs))
        assert enc._cache.keys() == kept.keys()
        assert all(enc._cache[k] is v for k, v in kept.items())
        with torch.inference_mode():  # buffers made there track no version: values decide
            enc.rocket.biases = enc.rocket.biases.clone()
            torch.testing.assert_close(enc.ppv(*padded(seqs)), enc.rocket(*padded(seqs)))


def test_a_mask_with_holes_is_computed_every_time_not_remembered() -> None:
    """Only a plain prefix of real steps is remembered by its values: a mask with a gap (a
    step dropped in the middle) is computed each time, in a batch beside remembered rows."""
    from mmcore.sequence.minirocket import MiniRocketEncoder

    rng = np.random.default_rng(1)
    seqs = [rng.normal(size=(n, 2)).astype(np.float32) for n in (30, 30)]
    enc = MiniRocketEncoder(fit_minirocket(seqs, num_features=168), output_size=4)
    x, mask = padded(seqs)
    holed = mask.clone()
    holed[1, 10] = False
    with torch.no_grad():
        enc.ppv(x, mask)  # both rows remembered
        assert len(enc._cache) == 2
        out = enc.ppv(x, holed)
        assert len(enc._cache) == 2  # the holed row was not added
        torch.testing.assert_close(out[0], enc.rocket(x[:1], mask[:1])[0])
        torch.testing.assert_close(out[1], enc.rocket(x[1:], holed[1:])[0])
        assert not torch.equal(out[1], enc.rocket(x[1:], mask[1:])[0])


def test_bfloat16_sequences_are_remembered_too() -> None:
    from mmcore.sequence.minirocket import MiniRocketEncoder

    rng = np.random.default_rng(2)
    seqs = [rng.normal(size=(n, 2)).astype(np.float32) for n in (30, 24)]
    enc = MiniRocketEncoder(fit_minirocket(seqs, num_features=168), output_size=4)
    x, mask = padded(seqs)
    x = x.to(torch.bfloat16)
    with torch.no_grad():
        first = enc.ppv(x, mask)
        assert len(enc._cache) == 2
        torch.testing.assert_close(enc.ppv(x, mask), first, rtol=0, atol=0)
        torch.testing.assert_close(first, enc.rocket(x, mask), rtol=0, atol=0)


def test_position_takes_the_minirocket_encoder_too(run, tmp_path) -> None:
    _, folder = run
    spec = mmcore.Spec(
        name="gunpoint-position",
        data={"path": str(folder / "table.csv"), "split_column": "split"},
        modalities={"trace": {"plugin": "position", "column": "path",
                              "options": {"encoder": "minirocket", "minirocket_features": 168,
                                          "hidden_size": 16}}},
        heads={"label": {"kind": "classification", "target": "label"}},
        train={"epochs": 2, "progress": False},
    )
    trainer = mmcore.Trainer(spec, output=tmp_path / "run", quiet=True, plots=False,
                             report=False)
    trainer.fit()
    encoder = trainer.model.encoders["trace"]
    assert type(encoder).__name__ == "MiniRocketEncoder" and encoder.output_size == 16
    state = json.loads((tmp_path / "run" / "modalities" / "trace" / "position.json").read_text())
    assert len(state["minirocket"]["biases"]) == 168
    bad = spec.model_dump()
    bad["modalities"]["trace"]["options"]["output"] = "sequence"
    with pytest.raises(mmcore.MmcoreError, match="output to 'pooled'"):
        mmcore.validate_spec(bad)


def test_a_sequence_gets_the_same_features_in_any_batch() -> None:
    """The biases are quantiles of the training sequences' own convolutions, so a training
    sequence sits exactly on some of them: its PPV depends on the last bit of the sum of its
    channels. That sum is made the same way whatever the batch (size, padding, absent rows)."""
    rng = np.random.default_rng(0)
    arrays = [rng.uniform(-1, 1, size=(n, 10)).astype(np.float32) for n in (1, 3, 2, 4, 3)]
    features = MiniRocketFeatures(fit_minirocket(arrays, 840, 32))
    alone = [transform_arrays(features, [a])[0] for a in arrays]
    for size in (2, 4, 5):
        batch = transform_arrays(features, arrays[:size], batch_size=size)
        np.testing.assert_array_equal(batch, np.stack(alone[:size]))


def test_an_exported_transform_gives_the_eager_features_exactly() -> None:
    """Where a graph is captured, each kernel tap is taken by index rather than by slice (a
    slice on a dynamic time axis costs the exporter symbolic shape work): the same steps, so
    the same features bit for bit, at other batch sizes and lengths than the traced ones."""
    from torch.export import Dim

    rng = np.random.default_rng(1)
    arrays = [rng.normal(size=(n, 3)).astype(np.float32) for n in (60, 41, 9, 70, 5, 33)]
    features = MiniRocketFeatures(fit_minirocket(arrays, 168, 32)).eval()
    assert len(features.dilations) > 1
    x, mask = padded(arrays[:3])
    batch, time = Dim("batch", min=1, max=1024), Dim("time", min=1, max=1 << 16)
    graph = torch.export.export(features, (x, mask),
                                dynamic_shapes=({0: batch, 1: time}, {0: batch, 1: time}))
    exported = graph.module()
    for rows in (arrays, arrays[4:5], arrays[1:4]):
        x, mask = padded(rows)
        with torch.no_grad():
            assert torch.equal(exported(x, mask), features(x, mask))
