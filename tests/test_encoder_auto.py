"""``encoder: "auto"``, the default of every sequence modality: chosen from the training split
when the modality is fitted, saved with the run, and read back by ``load_state``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mmcore_plugin_gesture.modality import GestureModality
from mmcore_plugin_gesture.options import GestureOptions

from mmcore.sequence import modality_options
from mmcore.sequence.encoder import SequenceEncoder
from mmcore.sequence.minirocket import MiniRocketEncoder


def sequences(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(int(rng.integers(12, 20)), 3)).astype(np.float32) for _ in range(n)]


def fitted(n: int, **options) -> GestureModality:
    modality = GestureModality("motion", GestureOptions(minirocket_features=168, **options))
    modality.fit(sequences(n))
    return modality


def test_auto_is_minirocket_on_a_small_training_split_and_is_saved(tmp_path):
    modality = fitted(30)
    assert modality.options.encoder == "auto" and modality.encoder_kind == "minirocket"
    assert isinstance(modality.build_encoder(), MiniRocketEncoder)
    modality.save_state(tmp_path)
    assert json.loads((tmp_path / "gesture.json").read_text())["encoder"] == "minirocket"
    loaded = GestureModality("motion", GestureOptions(minirocket_features=168))
    loaded.load_state(tmp_path)
    assert loaded.encoder_kind == "minirocket"
    assert isinstance(loaded.build_encoder(), MiniRocketEncoder)


def test_auto_is_tcn_above_the_row_limit_or_for_a_sequence_output(monkeypatch):
    monkeypatch.setattr(modality_options, "AUTO_MINIROCKET_ROWS", 29)
    big = fitted(30)
    assert big.encoder_kind == "tcn" and big.minirocket is None
    assert isinstance(big.build_encoder(), SequenceEncoder)
    monkeypatch.setattr(modality_options, "AUTO_MINIROCKET_ROWS", 2_000)
    assert fitted(30, output="sequence").encoder_kind == "tcn"  # minirocket gives no sequence
    assert fitted(30, encoder="transformer").encoder_kind == "transformer"  # a named one stays
    # a spec that sizes the trained network means it: "auto" does not trade it for minirocket
    assert fitted(30, tcn_channels=16).encoder_kind == "tcn"
    # even at its default value; and the fit cache's key follows what "auto" chose by
    assert fitted(30, tcn_channels=64).encoder_kind == "tcn"
    assert fitted(30, tcn_channels=64).fingerprint() != fitted(30).fingerprint()


def test_auto_cannot_build_before_it_is_fitted():
    modality = GestureModality("motion", GestureOptions(channels=3))
    with pytest.raises(ValueError, match="encoder 'auto' is chosen from the training split"):
        modality.build_encoder()


def test_a_run_saved_before_auto_existed_loads_as_tcn(tmp_path):
    """Its spec named no encoder and its state file has no choice: the default of then."""
    old = fitted(30, encoder="tcn")
    old.save_state(tmp_path)
    assert "encoder" not in json.loads((tmp_path / "gesture.json").read_text())
    loaded = GestureModality("motion", GestureOptions(minirocket_features=168))
    loaded.load_state(tmp_path)
    assert loaded.encoder_kind == "tcn"
    state = json.loads((tmp_path / "gesture.json").read_text())
    (tmp_path / "gesture.json").write_text(json.dumps({**state, "encoder": "lstm"}))
    with pytest.raises(ValueError, match="encoder must be 'tcn' or 'minirocket', got 'lstm'"):
        GestureModality("motion", GestureOptions()).load_state(tmp_path)
