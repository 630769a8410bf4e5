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
import torch
from torch import nn

import mmcore
from mmcore.sequence.encoder import REFERENCE_NAMES, SequenceEncoder

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


def test_the_reference_preset_saves_and_loads_under_the_founding_names() -> None:
    """A ``SequenceEncoder`` with ``saved_names`` shows its weights under them in
    ``state_dict()`` (so run folders old and new hold the same names) and loads them back
    under any prefix; its own modules keep their names."""
    torch.manual_seed(0)
    encoder = SequenceEncoder(3, frontend="conv", conv_channels=(4,), hidden_size=4,
                              bidirectional=True, output_size=5, saved_names=REFERENCE_NAMES)
    assert list(encoder.state_dict()) == [
        "convs.0.weight", "convs.0.bias",
        *(f"lstm.{w}_{k}_l0{d}" for d in ("", "_reverse") for w in ("weight", "bias")
          for k in ("ih", "hh")),
        "proj.weight", "proj.bias",
    ]
    assert {name.split(".")[0] for name, _ in encoder.named_parameters()} == {
        "front", "rnn", "proj"}
    model = nn.ModuleDict({"seq": encoder})
    saved = model.state_dict()
    assert "seq.lstm.weight_ih_l0" in saved and "seq.rnn.weight_ih_l0" not in saved
    torch.manual_seed(1)
    again = nn.ModuleDict({"seq": SequenceEncoder(
        3, frontend="conv", conv_channels=(4,), hidden_size=4, bidirectional=True,
        output_size=5, saved_names=REFERENCE_NAMES)})
    again.load_state_dict(saved, strict=True)
    for (name, a), (_, b) in zip(model.named_parameters(), again.named_parameters(),
                                 strict=True):
        assert torch.equal(a, b), name


def test_the_optimizer_orders_parameters_by_their_saved_names() -> None:
    """A checkpoint's optimizer state is a list in parameter order: the order follows the
    saved names (``lstm`` before ``proj``), as it did when the attribute was called ``lstm``,
    so an unfinished run saved before the preset resumes with each state on its parameter."""
    from mmcore.train.optim import parameter_groups

    encoder = SequenceEncoder(3, frontend="none", body="lstm", hidden_size=4, output_size=5,
                              bidirectional=False, saved_names=REFERENCE_NAMES)
    model = nn.ModuleDict({"encoders": nn.ModuleDict({"seq": encoder})})
    by_id = {id(p): k for k, p in model.state_dict(keep_vars=True).items()}
    groups = [[by_id[id(p)] for p in g["params"]] for g in parameter_groups(model, 0.0)]
    assert all(names == sorted(names) for names in groups)  # in each group, by saved name
    first = groups[0]  # the matrices: the LSTM's before the projection's, as before
    assert first[0].startswith("encoders.seq.lstm.") and first[-1].startswith("encoders.seq.proj")
