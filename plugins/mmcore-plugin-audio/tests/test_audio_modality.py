"""The ``audio`` modality: the shared contract, every accepted value kind on real FSDD clips
from av_digits, resampling, length limits, bad input, and the encoder's masks."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile
import torch
from mmcore_plugin_audio.mel import mel_frequencies
from mmcore_plugin_audio.modality import AudioModality
from mmcore_plugin_audio.options import AudioOptions
from pydantic import ValidationError

from mmcore.testing import ModalityContract, shared_data

FSDD = {"sample_rate": 8000, "n_fft": 256, "win_length": 200, "hop_length": 80, "n_mels": 40}


@pytest.fixture(scope="module")
def clips() -> tuple[Path, list[str]]:
    """The av_digits folder and the relative paths of a few of its recordings."""
    pairs = shared_data("av_digits", "pairs.csv", anchor=__file__)
    with pairs.open() as f:
        return pairs.parent, [row["audio"] for row in list(csv.DictReader(f))[:6]]


def _modality(root: Path | None = None, **options) -> AudioModality:
    return AudioModality("audio", AudioOptions(**{**FSDD, **options}), root=root)


def _tone(hz: float, seconds: float, rate: int) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * hz * np.arange(int(seconds * rate)) / rate)).astype(
        np.float32)


# -- the shared contract, on generated clips (runs without the shared data too) ----------------
class TestAudioContract(ModalityContract):
    plugin = "audio"
    options = {**FSDD, "n_mels": 16, "conv_channels": [4, 8], "feature_size": 8,
               "lstm_hidden": 6}
    bad_samples = (
        np.array([0.1, np.nan, 0.2], dtype=np.float32),
        np.zeros(0, dtype=np.float32),
        np.zeros((2, 3, 4)),
        b"RIFF garbage",
        "missing.wav",
        {"array": [0.0, 0.1], "sampling_rate": None},
    )

    def make_samples(self, tmp_path: Path) -> list:
        soundfile.write(tmp_path / "tone.wav", _tone(440, 0.3, 16000), 16000)
        soundfile.write(tmp_path / "tone.flac", _tone(880, 0.1, 8000), 8000)
        return ["tone.wav", (tmp_path / "tone.flac").read_bytes(),
                _tone(300, 0.05, 8000), {"array": _tone(500, 0.2, 22050), "sampling_rate": 22050}]


class TestAudioNoLstmContract(TestAudioContract):
    options = {**TestAudioContract.options, "lstm": False, "time_pool": [3, 1]}


# -- real clips ------------------------------------------------------------------------------
def test_frames_follow_the_clip_length(clips) -> None:
    root, paths = clips
    for path in paths[:3]:
        n = soundfile.info(root / path).frames
        at_8k = _modality(root).preprocess(path)
        assert at_8k.shape == (1 + n // 80, 40) and at_8k.dtype == np.float32
        # 16 kHz doubles the samples; soxr keeps the duration, so 2n samples
        at_16k = _modality(root, sample_rate=16000, n_fft=512, win_length=400,
                           hop_length=160).preprocess(path)
        assert at_16k.shape == (1 + 2 * n // 160, 40)
        # per-utterance normalisation: zero mean, unit variance over the whole spectrogram
        assert abs(at_8k.mean()) < 1e-4 and abs(at_8k.std() - 1) < 1e-3


def test_every_value_kind_decodes_the_same(clips, tmp_path: Path) -> None:
    root, paths = clips
    path = paths[0]
    data = (root / path).read_bytes()
    pcm, rate = soundfile.read(root / path, dtype="int16")
    floats, _ = soundfile.read(root / path, dtype="float32")
    soundfile.write(tmp_path / "stereo.wav", np.stack([floats, floats], axis=1), rate)
    soundfile.write(tmp_path / "copy.flac", floats, rate)
    modality = _modality(root)
    expected = modality.preprocess(path)
    decoder = SimpleNamespace(  # what datasets >= 4 hands out for a decoded Audio value
        get_all_samples=lambda: SimpleNamespace(data=torch.from_numpy(floats[None]),
                                                sample_rate=rate))
    kinds = {
        "absolute path": str(root / path),
        "Path": root / path,
        "bytes": data,
        "datasets bytes dict": {"bytes": data, "path": None},
        "datasets path dict": {"bytes": None, "path": path},
        "datasets array dict": {"array": floats.astype(np.float64), "sampling_rate": rate},
        "datasets decoder": decoder,
        "int16 array": pcm,
        "float list": floats.tolist(),
        "[channels, n] array": np.stack([floats, floats]),
        "[n, channels] array": np.stack([floats, floats], axis=1),
        "stereo wav": str(tmp_path / "stereo.wav"),
        "flac": str(tmp_path / "copy.flac"),
    }
    for name, value in kinds.items():
        np.testing.assert_allclose(modality.preprocess(value), expected, atol=2e-4, err_msg=name)


def test_resampling_keeps_the_pitch() -> None:
    modality = _modality(normalize="none")
    edges = mel_frequencies(42, 0.0, 4000.0)
    for rate in (8000, 11025, 16000, 44100):
        spectrum = modality.preprocess({"array": _tone(1000, 0.5, rate), "sampling_rate": rate})
        assert spectrum.shape[0] == 1 + 4000 // 80
        loudest = int(np.argmax(spectrum.mean(axis=0)))
        assert edges[loudest] < 1000 < edges[loudest + 2], rate


def test_preprocessing_is_deterministic_and_fingerprinted(clips) -> None:
    root, paths = clips
    first, again = _modality(root).preprocess(paths[1]), _modality(root).preprocess(paths[1])
    assert np.array_equal(first, again)
    # the CNN's sizes do not change the arrays: not part of the key for the CNN...
    base = _modality(root, encoder="reference").fingerprint()
    sized = _modality(root, encoder="reference", lstm_hidden=7, conv_channels=[2])
    assert sized.fingerprint() == base
    # ...but with encoder "auto" they decide between the CNN and a fitted minirocket
    assert _modality(root, lstm_hidden=7).fingerprint() != _modality(root).fingerprint()
    base = _modality(root).fingerprint()
    assert _modality(root, n_mels=20).fingerprint() != base
    assert _modality(root, normalize="band").fingerprint() != base


def test_normalisation_choices() -> None:
    tone = {"array": _tone(700, 0.4, 8000) + _tone(2100, 0.4, 8000), "sampling_rate": 8000}
    band = _modality(normalize="band").preprocess(tone)
    np.testing.assert_allclose(band.mean(axis=0), 0.0, atol=1e-4)
    raw = _modality(normalize="none").preprocess(tone)
    assert raw.mean() < -1  # log power of a sub-unit signal, not centred
    silence = _modality().preprocess(np.zeros(800, dtype=np.float32))
    assert np.isfinite(silence).all() and np.abs(silence).max() < 1e-3


# -- length limits and bad input ---------------------------------------------------------------
def test_max_seconds(clips) -> None:
    root, paths = clips
    n = soundfile.info(root / paths[1]).frames  # 4727 samples: 0.59 s
    with pytest.raises(ValueError, match=r"lasts 0\.59 s, longer than max_seconds=0\.5.*truncate"):
        _modality(root, max_seconds=0.5).preprocess(paths[1])
    cut = _modality(root, max_seconds=0.5, truncate=True).preprocess(paths[1])
    assert cut.shape == (1 + 4000 // 80, 40)
    resampled = _modality(root, max_seconds=0.25, truncate=True, sample_rate=16000,
                          hop_length=160).preprocess(paths[1])
    assert resampled.shape == (1 + 4000 // 160, 40)
    assert _modality(root, max_seconds=1.0).preprocess(paths[1]).shape[0] == 1 + n // 80


def test_bad_input_errors_say_what_was_expected(tmp_path: Path) -> None:
    (tmp_path / "garbage.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 20)
    soundfile.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 8000)
    modality = _modality(tmp_path)
    cases = [
        ("garbage.wav", r"cannot decode audio .*garbage\.wav.*expected a file libsndfile reads"),
        ("absent.wav", r"file not found: .*absent\.wav"),
        ("empty.wav", r"empty audio: .*empty\.wav has no samples"),
        (np.array([], dtype=np.float32), "empty audio: no samples"),
        (np.array([0.0, np.inf]), r"non-finite value inf at index \(1,\)"),
        (np.zeros((2, 2, 2)), r"shape \[n\], \[channels, n\] or \[n, channels\], got shape"),
        ([[0.1, 0.2], [0.3]], "not a numeric array"),
        (np.array(["a", "b"]), "expected numeric audio samples"),
        ({"array": [0.1], "sampling_rate": -3}, "positive integer 'sampling_rate'"),
        ({"sampling_rate": 8000}, r"expected 'bytes' or 'path'"),
        (12, "expected an audio path.*got int"),
        ({"array": [0.1], "sampling_rate": 44100}, "too short to resample"),
    ]
    for value, message in cases:
        with pytest.raises(ValueError, match=message):
            modality.preprocess(value)


def test_real_wav_cut_inside_its_header_is_refused(clips, tmp_path: Path) -> None:
    root, paths = clips
    (tmp_path / "cut.wav").write_bytes((root / paths[0]).read_bytes()[:20])
    with pytest.raises(ValueError, match=r"cannot decode audio .*cut\.wav: .*Malformed"):
        _modality(tmp_path).preprocess("cut.wav")


def test_options_are_validated() -> None:
    with pytest.raises(ValidationError, match=r"win_length \(300\) must not exceed n_fft"):
        AudioOptions(n_fft=256, win_length=300)
    with pytest.raises(ValidationError, match=r"f_max \(5000.0 Hz\) is above half"):
        AudioOptions(sample_rate=8000, f_max=5000)
    with pytest.raises(ValidationError, match="f_min .* must be below f_max"):
        AudioOptions(f_min=3000, f_max=2000)
    with pytest.raises(ValidationError, match="time_pool has 2 factors for 3 convolutions"):
        AudioOptions(time_pool=[2, 2])
    with pytest.raises(ValidationError, match="pool: last needs lstm: true"):
        AudioOptions(lstm=False, pool="last")


# -- collation and encoder -----------------------------------------------------------------------
def test_encoder_masks_follow_true_lengths(clips) -> None:
    root, paths = clips
    modality = _modality(root, output="sequence", conv_channels=[4, 8, 8], feature_size=8,
                         lstm_hidden=6)
    arrays = [modality.preprocess(p) for p in paths[:3]]
    batch = modality.collate([arrays[0], None, arrays[1], arrays[2]])
    lengths = [a.shape[0] for a in arrays]
    assert batch.mask.sum(dim=1).tolist() == [lengths[0], 0, lengths[1], lengths[2]]
    torch.manual_seed(0)
    encoder = modality.build_encoder().eval()
    with torch.no_grad():
        together = encoder(batch)
        alone = encoder(modality.collate([arrays[0]]))
    # time is pooled by 2, 2, 1 with ceil: a clip of L frames keeps ceil(ceil(L / 2) / 2) steps
    steps = [math.ceil(math.ceil(n / 2) / 2) for n in lengths]
    assert together.mask.sum(dim=1).tolist() == [steps[0], 0, steps[1], steps[2]]
    assert together.values.shape == (4, max(steps), 6)
    torch.testing.assert_close(together.values[0, : steps[0]], alone.values[0], atol=1e-5,
                               rtol=1e-5)
    assert bool((together.values[0, steps[0]:] == 0).all())
    last = _modality(root, pool="last", conv_channels=[4, 8, 8], feature_size=8, lstm_hidden=6,
                     bidirectional=True, encoder="reference").build_encoder()
    assert last(batch).values.shape == (4, 12)
