"""Run folders saved with ``encoder: "reference"`` keep loading and predicting as they did.

``tests/fixtures/reference_runs/{gesture,position}`` are tiny runs (24 generated rows, widths
of 4) trained by the commit named in their ``expected.json``, when the reference designs were
the plugins' own ``GestureEncoder`` and ``PositionEncoder`` (weights under ``lstm.*``,
``convs.*``, ``proj.*``); only the files ``mmcore.load`` reads were kept. ``expected.json``
holds the rows given to ``predict`` and what it returned then.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import mmcore

RUNS = Path(__file__).parent / "fixtures" / "reference_runs"


@pytest.mark.parametrize("plugin", ["gesture", "position"])
def test_a_reference_run_saved_before_predicts_as_it_did(plugin: str) -> None:
    pytest.importorskip(f"mmcore_plugin_{plugin}")
    run = RUNS / plugin
    expected = json.loads((run / "expected.json").read_text())
    predictor = mmcore.load(run, device="cpu")
    assert predictor.modalities["seq"].encoder_kind == "reference"
    got = predictor.predict(expected["rows"])
    assert len(got) == len(expected["predictions"])
    for row, want in zip(got, expected["predictions"], strict=True):
        assert row["label"]["label"] == want["label"]["label"]
        assert row["label"]["probability"] == pytest.approx(want["label"]["probability"],
                                                            abs=1e-6)
