"""``encoder: "minirocket"`` on audio: fitted on the training clips' log-mels, saved and loaded
with the run, and the small-data encoder that learns spoken digits from few clips."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from mmcore_plugin_audio.modality import AudioModality
from mmcore_plugin_audio.options import AudioOptions

from mmcore.sequence.minirocket import MiniRocketEncoder, fit_minirocket
from mmcore.testing import shared_data, train_probe

OPTIONS = dict(sample_rate=8000, n_fft=256, hop_length=80, n_mels=16, feature_size=16,
               encoder="minirocket", minirocket_features=840)


def tones(n: int, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """Clips of 0.2-0.4 s at 8 kHz: a tone whose pitch is the class (3 classes), with noise."""
    rng = np.random.default_rng(seed)
    clips, labels = [], []
    for i in range(n):
        label = i % 3
        t = np.arange(int(8000 * rng.uniform(0.2, 0.4))) / 8000
        clip = np.sin(2 * np.pi * (400 + 900 * label) * t) + 0.3 * rng.normal(size=t.size)
        clips.append(clip.astype(np.float32))
        labels.append(label)
    return clips, np.array(labels)


def test_minirocket_is_fitted_on_the_log_mels_and_round_trips_through_the_state(tmp_path):
    clips, _ = tones(12)
    m = AudioModality("a", AudioOptions(**OPTIONS))
    m.fit(clips)
    expected = fit_minirocket([m.preprocess(c) for c in clips], 840, 32)
    assert m.minirocket == expected
    m.save_state(tmp_path)
    again = AudioModality("a", AudioOptions(**OPTIONS))
    again.load_state(tmp_path)
    assert again.minirocket == expected
    encoder = again.build_encoder()
    assert isinstance(encoder, MiniRocketEncoder) and encoder.output_size == 16
    batch = again.collate([again.preprocess(c) for c in clips[:4]] + [None])
    out = encoder(batch)
    assert out.values.shape == (5, 16) and torch.all(out.values[4] == 0)  # absent: zeros


def test_the_reference_encoder_fits_and_saves_nothing(tmp_path):
    clips, _ = tones(3)
    m = AudioModality("a", AudioOptions(sample_rate=8000, n_fft=256, hop_length=80, n_mels=16,
                                        encoder="reference"))
    m.fit(clips)
    m.save_state(tmp_path)
    assert m.minirocket is None and not any(tmp_path.iterdir())
    assert "minirocket" not in m.fingerprint()  # the caches of existing runs stay valid


def test_an_unfitted_or_unsaved_minirocket_is_a_clear_error(tmp_path):
    m = AudioModality("a", AudioOptions(**OPTIONS))
    with pytest.raises(ValueError, match="minirocket encoder is not fitted"):
        m.build_encoder()
    with pytest.raises(ValueError, match="no saved state"):
        m.load_state(tmp_path)
    with pytest.raises(ValueError, match="output to 'pooled'"):
        AudioOptions(**OPTIONS, output="sequence")


def test_minirocket_learns_spoken_digits_from_few_clips():
    pairs = shared_data("av_digits", "pairs.csv", anchor=__file__)
    with pairs.open() as f:
        rows = list(csv.DictReader(f))
    rng = np.random.default_rng(0)
    data = {}
    for split, n in (("train", 200), ("validation", 200)):
        chosen = [rows[i] for i in rng.permutation(len(rows)) if rows[i]["split"] == split][:n]
        data[split] = ([r["audio"] for r in chosen], np.array([int(r["label"]) for r in chosen]))
    modality = AudioModality(
        "audio", AudioOptions(sample_rate=8000, n_fft=256, win_length=200, hop_length=80,
                              n_mels=40, encoder="minirocket", feature_size=64),
        root=pairs.parent)
    probe = train_probe(modality, *data["train"], epochs=30, batch_size=32, lr=3e-3)
    # chance is 0.1; 20 clips per digit reach about 0.83 here (the CNN + LSTM about 0.86)
    assert probe.accuracy(*data["validation"]) > 0.75


def test_auto_picks_minirocket_for_few_clips_and_load_state_reads_the_choice(tmp_path):
    """``encoder: "auto"`` (the default): minirocket on a small training split, saved as its
    state file; a run folder without that file (every run saved before "auto" existed, or
    "auto" on a large split) builds the reference CNN."""
    from mmcore_plugin_audio.encoder import AudioEncoder

    from mmcore.sequence.minirocket import MiniRocketEncoder

    clips, _ = tones(6)
    auto = dict(OPTIONS, encoder="auto")
    m = AudioModality("a", AudioOptions(**auto))
    m.fit(clips)
    assert m.encoder_kind == "minirocket"
    m.save_state(tmp_path / "small")
    loaded = AudioModality("a", AudioOptions(**auto))
    loaded.load_state(tmp_path / "small")
    assert isinstance(loaded.build_encoder(), MiniRocketEncoder)
    before_auto = AudioModality("a", AudioOptions(**auto))
    before_auto.load_state(tmp_path / "nothing-saved")
    assert before_auto.encoder_kind == "reference"
    assert isinstance(before_auto.build_encoder(), AudioEncoder)
    sequence = AudioModality("a", AudioOptions(**dict(auto, output="sequence")))
    assert sequence.encoder_kind == "reference"  # minirocket gives no sequence
    sized = AudioModality("a", AudioOptions(**dict(auto, conv_channels=[8, 8])))
    sized.fit(clips)  # a spec that sizes the CNN means it
    assert sized.encoder_kind == "reference" and sized.minirocket is None
    # the fit cache's key follows what "auto" chose by: not one fit for both specs
    assert sized.fingerprint() != m.fingerprint()
