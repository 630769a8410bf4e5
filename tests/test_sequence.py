"""mmcore.sequence: each transform against a numpy reference, fitting on training arrays,
state round trips, errors that name the step, and the sequence encoder's mask handling."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from scipy.signal import resample_poly

from mmcore.batch import ModalityBatch
from mmcore.sequence import SequencePipeline
from mmcore.sequence.encoder import SequenceEncoder, auto_halvings, downsample_mask
from mmcore.sequence.modality import SequenceOptions


@pytest.fixture
def rng() -> np.random.Generator:
    """Each test's own generator, seeded the same: a test's data does not depend on which
    tests ran before it in the same process."""
    return np.random.default_rng(0)


def run(steps, x, rate=None, names=None, train=None):
    pipe = SequencePipeline(steps, rate=rate, channel_names=names)
    if pipe.needs_fit:
        arrays = train if train is not None else [x]
        pipe.fit(lambda: iter(arrays))
    return pipe(x)


# -- each transform against a reference -------------------------------------------------------
def test_resample_mean_averages_bins(rng):
    x = rng.normal(size=(400, 3))
    out = run([{"op": "resample", "factor": 4}], x)
    np.testing.assert_allclose(out, x.reshape(100, 4, 3).mean(axis=1), rtol=1e-5, atol=1e-6)
    out = run([{"op": "resample", "steps": 7}], x[:10])  # uneven bins still cover every step
    assert out.shape == (7, 3)
    np.testing.assert_allclose(run([{"op": "resample", "steps": 1}], x)[0], x.mean(axis=0),
                               rtol=1e-4, atol=1e-6)


def test_resample_linear_matches_numpy_interp(rng):
    x = rng.normal(size=(37, 2))
    out = run([{"op": "resample", "steps": 90, "method": "linear"}], x)
    grid = np.linspace(0, 36, 90)
    for c in range(2):
        np.testing.assert_allclose(out[:, c], np.interp(grid, np.arange(37), x[:, c]), atol=1e-6)


def test_decimate_is_scipy_polyphase_and_removes_aliases():
    t = np.arange(800) / 200.0
    high = np.sin(2 * np.pi * 80 * t)  # 80 Hz: above the 25 Hz Nyquist of a 50 Hz output
    low = np.sin(2 * np.pi * 3 * t)
    x = np.stack([high, low], axis=1)
    out = run([{"op": "resample", "rate": 50, "method": "decimate"}], x, rate=200)
    np.testing.assert_allclose(out, resample_poly(x, 1, 4, axis=0), rtol=1e-5, atol=1e-6)
    assert np.abs(out[20:-20, 0]).max() < 0.05  # the alias is filtered out
    assert np.abs(out[20:-20, 1]).max() > 0.9  # the slow wave is kept
    naive = x[::4, 0]
    assert np.abs(naive).max() > 0.5  # plain decimation would alias it (sanity of the test)


def test_envelopes_match_a_loop(rng):
    x = rng.normal(size=(103, 2)) * 50 + 300
    out = run([{"op": "envelope", "kind": "rms", "window_ms": 50, "hop_ms": 25}], x, rate=200)
    centred = x - x.mean(axis=0)
    expected = np.array([np.sqrt((centred[s:s + 10] ** 2).mean(axis=0))
                         for s in range(0, 103 - 10 + 1, 5)])
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    mav = run([{"op": "envelope", "kind": "mav", "window": 8, "demean": False}], x)
    np.testing.assert_allclose(mav, np.abs(x[:96]).reshape(12, 8, 2).mean(axis=1), rtol=1e-5)
    short = run([{"op": "envelope", "window": 500}], x)  # shorter than a window: one window
    assert short.shape == (1, 2)


def test_differences_append_velocity_and_acceleration(rng):
    x = rng.normal(size=(20, 3))
    out = run([{"op": "diff", "order": 2}], x)
    d1 = np.vstack([np.zeros((1, 3)), np.diff(x, axis=0)])
    d2 = np.vstack([np.zeros((1, 3)), np.diff(d1, axis=0)])
    np.testing.assert_allclose(out, np.hstack([x, d1, d2]), atol=1e-6)
    only = run([{"op": "diff", "append": False}], x)
    np.testing.assert_allclose(only, d1, atol=1e-6)


def test_select_by_index_and_name_and_clip(rng):
    x = rng.normal(size=(10, 4)) * 10
    names = ["ax", "ay", "gx", "gy"]
    by_name = run([{"op": "select", "channels": ["gy", "ax"]}], x, names=names)
    np.testing.assert_allclose(by_name, x[:, [3, 0]], rtol=1e-6)
    np.testing.assert_allclose(run([{"op": "select", "channels": [1]}], x), x[:, [1]], rtol=1e-6)
    clipped = run([{"op": "clip", "limit": 2.0}], x)
    assert clipped.max() <= 2.0 and clipped.min() >= -2.0


# -- fitted standardisation -------------------------------------------------------------------
def test_dataset_standardize_is_fitted_on_training_arrays_only(rng):
    train = [rng.normal(size=(n, 3)) * [1, 10, 100] + [5, -5, 50] for n in (7, 30, 12)]
    pipe = SequencePipeline([{"op": "standardize"}])
    with pytest.raises(RuntimeError, match="not fitted"):
        pipe(train[0])
    pipe.fit(lambda: iter(train))
    every = np.concatenate(train)
    np.testing.assert_allclose(pipe.stats[0].centre, every.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(pipe.stats[0].scale, every.std(axis=0), rtol=1e-9)
    test = rng.normal(size=(5, 3)) * 1000  # other data: transformed with the training numbers
    np.testing.assert_allclose(pipe(test), (test - every.mean(0)) / every.std(0), rtol=1e-5)
    assert pipe.median_length == 12


def test_robust_standardize_uses_median_and_iqr(rng):
    train = [rng.standard_t(2, size=(40, 2)) for _ in range(4)]
    pipe = SequencePipeline([{"op": "standardize", "method": "robust"}])
    pipe.fit(lambda: iter(train))
    q1, med, q3 = np.percentile(np.concatenate(train), [25, 50, 75], axis=0)
    np.testing.assert_allclose(pipe.stats[0].centre, med)
    np.testing.assert_allclose(pipe.stats[0].scale, q3 - q1)


def test_a_step_is_fitted_on_the_output_of_the_steps_before_it(rng):
    train = [rng.normal(size=(400, 2)) * 100 for _ in range(3)]
    pipe = SequencePipeline([{"op": "envelope", "window": 20}, {"op": "standardize"}])
    pipe.fit(lambda: iter(train))
    out = np.concatenate([pipe(x) for x in train])
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=0), 1.0, atol=1e-5)


def test_sequence_scope_and_constant_channels():
    x = np.stack([np.arange(10.0), np.full(10, 4.0)], axis=1)
    out = run([{"op": "standardize", "scope": "sequence"}], x)
    np.testing.assert_allclose(out[:, 0], (x[:, 0] - 4.5) / x[:, 0].std(), rtol=1e-5)
    assert not out[:, 1].any()  # a constant channel is centred, not divided by zero


def test_state_round_trips_through_json_and_checks_the_declared_steps(rng):
    steps = [{"op": "diff"}, {"op": "standardize"}]
    pipe = SequencePipeline(steps)
    train = [rng.normal(size=(9, 2)) for _ in range(3)]
    pipe.fit(lambda: iter(train))
    state = json.loads(json.dumps(pipe.state()))
    loaded = SequencePipeline(steps)
    loaded.load_state(state)
    np.testing.assert_array_equal(loaded(train[1]), pipe(train[1]))
    with pytest.raises(ValueError, match="saved transforms differ"):
        SequencePipeline([{"op": "standardize"}]).load_state(state)
    state["stats"][1]["scale"] = [0.0, 1.0]
    with pytest.raises(ValueError, match="scale > 0"):
        SequencePipeline(steps).load_state(state)


def test_output_channels(rng):
    pipe = SequencePipeline([{"op": "select", "channels": [0, 2]}, {"op": "diff", "order": 2}])
    assert pipe.output_channels(6) == 6
    assert pipe(rng.normal(size=(5, 6))).shape == (5, 6)


# -- errors that name the step ----------------------------------------------------------------
def test_errors_name_the_step_and_the_fix():
    with pytest.raises(ValueError, match=r"transforms\[0\] \(envelope\).*set the modality's rate"):
        SequencePipeline([{"op": "envelope", "window_ms": 50}])
    with pytest.raises(ValueError, match=r"transforms\[1\].*fixed number of steps"):
        SequencePipeline([{"op": "resample", "steps": 50}, {"op": "resample", "rate": 10}],
                         rate=100)
    with pytest.raises(ValueError, match="no channel named 'gz'"):
        SequencePipeline([{"op": "select", "channels": ["gz"]}], channel_names=["gx"])
    with pytest.raises(ValueError, match="set the modality's channel_names"):
        SequencePipeline([{"op": "select", "channels": ["gx"]}])
    with pytest.raises(ValueError, match="asks for channel 5"):
        run([{"op": "select", "channels": [5]}], np.zeros((3, 2)))
    with pytest.raises(ValidationError, match="exactly one of steps, factor or rate"):
        SequenceOptions(transforms=[{"op": "resample", "steps": 4, "factor": 2}])
    with pytest.raises(ValidationError, match="power of 2"):
        SequenceOptions(downsample=3)
    with pytest.raises(ValidationError, match="set the modality's rate"):
        SequenceOptions(transforms=[{"op": "resample", "rate": 50}])
    with pytest.raises(ValueError, match=r"window_ms=50.0 is 0.5 steps at 10 Hz"):
        SequencePipeline([{"op": "envelope", "window_ms": 50}], rate=10)
    with pytest.raises(ValidationError, match="each transform needs an 'op'"):
        SequenceOptions(transforms=[{"window": 3}])


# -- the encoder ---------------------------------------------------------------------------------
def test_auto_halvings_and_downsampled_masks():
    assert [auto_halvings(n) for n in (None, 16, 64, 65, 400, 2000, 10**6)] == [0, 0, 0, 1, 3, 5, 6]
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    assert downsample_mask(mask, 2).sum(dim=1).tolist() == [3, 2, 0]


@pytest.mark.parametrize("body", ["lstm", "transformer"])
def test_encoder_output_does_not_depend_on_padding(body):
    torch.manual_seed(0)
    enc = SequenceEncoder(3, halvings=2, body=body, hidden_size=16, heads=2).eval()
    short, long = torch.randn(37, 3), torch.randn(90, 3)

    def batch(items):
        t = max(len(x) for x in items)
        values = torch.zeros(len(items), t, 3)
        mask = torch.zeros(len(items), t, dtype=torch.bool)
        for i, x in enumerate(items):
            values[i, : len(x)], mask[i, : len(x)] = x, True
        return ModalityBatch(values, torch.ones(len(items), dtype=torch.bool), mask)

    with torch.no_grad():
        alone = enc(batch([short])).values
        padded = enc(batch([short, long])).values
    torch.testing.assert_close(padded[:1], alone, atol=1e-5, rtol=1e-5)
    assert padded.shape == (2, enc.output_size)


# -- augmentation --------------------------------------------------------------------------------
def _padded(lengths, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = max(lengths)
    values = torch.zeros(len(lengths), t, c)
    mask = torch.zeros(len(lengths), t, dtype=torch.bool)
    for i, n in enumerate(lengths):
        values[i, :n] = torch.randn(n, c, generator=g)
        mask[i, :n] = True
    return ModalityBatch(values, torch.ones(len(lengths), dtype=torch.bool), mask)


def test_augmentation_is_seeded_keeps_padding_and_is_off_by_default():
    from mmcore.sequence import Augment
    from mmcore.sequence.augment import augment_sequences

    batch = _padded([5, 12, 9])
    assert augment_sequences(batch, Augment(), torch.Generator()) is batch
    options = Augment(jitter=0.1, scale=0.2, shift=0.3, time_mask=0.3, channel_mask=0.2)
    one = augment_sequences(batch, options, torch.Generator().manual_seed(3)).values
    two = augment_sequences(batch, options, torch.Generator().manual_seed(3)).values
    other = augment_sequences(batch, options, torch.Generator().manual_seed(4)).values
    torch.testing.assert_close(one, two)
    assert not torch.equal(one, other)
    assert not one[~batch.mask].any()  # padded steps stay zero


def test_shift_rolls_real_steps_and_time_mask_hides_one_short_span():
    from mmcore.sequence import Augment
    from mmcore.sequence.augment import augment_sequences

    batch = _padded([7, 20])
    out = augment_sequences(batch, Augment(shift=0.5), torch.Generator().manual_seed(0)).values
    for i, n in enumerate([7, 20]):
        rolled = [torch.roll(batch.values[i, :n], k, dims=0) for k in range(n)]
        assert any(torch.equal(out[i, :n], r) for r in rolled)
    masked = augment_sequences(batch, Augment(time_mask=0.25),
                               torch.Generator().manual_seed(1)).values
    hidden = (masked[1, :20] == 0).all(dim=1)
    where = hidden.nonzero().squeeze(1)
    assert hidden.sum() <= 5 and (len(where) == 0 or where.diff().eq(1).all())  # one span


def test_long_single_channel_input_trains_without_crashing():
    # A kernel-1 stride-2 Conv1d corrupted the heap in its backward pass on CPU (torch 2.13,
    # one channel, thousands of steps): run the strided encoder in a child process.
    import subprocess
    import sys

    code = (
        "import torch\n"
        "from mmcore.batch import ModalityBatch\n"
        "from mmcore.sequence.encoder import SequenceEncoder, auto_halvings\n"
        "torch.manual_seed(0)\n"
        "enc = SequenceEncoder(1, halvings=auto_halvings(8000), hidden_size=16)\n"
        "for _ in range(8):\n"
        "    x = torch.randn(32, 8000, 1)\n"
        "    mask = torch.ones(32, 8000, dtype=torch.bool)\n"
        "    mask[:5, 4000:] = False\n"
        "    out = enc(ModalityBatch(x, torch.ones(32, dtype=torch.bool), mask)).values\n"
        "    out.sum().backward()\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": ""})
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_a_single_channel_reaches_the_encoder():
    # a LayerNorm over one channel would output a constant: the first block must not apply it
    torch.manual_seed(0)
    enc = SequenceEncoder(1, halvings=1, hidden_size=8).eval()
    mask = torch.ones(2, 40, dtype=torch.bool)
    x = torch.randn(2, 40, 1)
    with torch.no_grad():
        a = enc(ModalityBatch(x, torch.ones(2, dtype=torch.bool), mask)).values
        b = enc(ModalityBatch(3 * x, torch.ones(2, dtype=torch.bool), mask)).values
    assert not torch.allclose(a, b)


def test_fitting_reads_the_training_data_once_per_fitted_step(rng):
    train = [rng.normal(size=(n, 3)) for n in (40, 55, 81, 90, 120)]
    calls = []

    def arrays():
        calls.append(1)
        return iter(train)

    pipe = SequencePipeline([{"op": "envelope", "window": 8, "hop": 4}, {"op": "standardize"},
                             {"op": "resample", "factor": 2}])
    pipe.fit(arrays)
    assert len(calls) == 1  # the lengths come from the shapes read in that pass
    assert pipe.median_length == int(np.median([pipe(x).shape[0] for x in train]))
    calls.clear()
    plain = SequencePipeline([{"op": "resample", "factor": 4}])
    plain.fit(arrays)
    assert len(calls) == 1 and plain.median_length == 21
