"""``SequencePipeline.check``: what a spec's ``transforms`` are checked with, without building a
pipeline; the pipeline's constructor keeps what the same check returns."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mmcore.sequence import SequencePipeline, parse_transforms
from mmcore.sequence.modality import SequenceOptions

STEPS = [{"op": "select", "channels": ["az", 0]}, {"op": "envelope", "window_ms": 40},
         {"op": "resample", "factor": 2}]


def test_check_gives_the_rates_and_channels_the_pipeline_keeps():
    rates, select = SequencePipeline.check(parse_transforms(STEPS), 100, ["ax", "ay", "az"])
    assert rates == [100, 100, 25.0, 12.5] and select == [[2, 0], None, None]
    pipe = SequencePipeline(STEPS, rate=100, channel_names=["ax", "ay", "az"])
    assert (pipe.rates, pipe._select) == (rates, select)


def test_options_are_checked_without_building_a_pipeline(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the options built a pipeline")

    monkeypatch.setattr(SequencePipeline, "__init__", refuse)
    SequenceOptions(transforms=STEPS, rate=100, channel_names=["ax", "ay", "az"])
    with pytest.raises(ValidationError, match=r"transforms\[0\] \(select\): no channel named"):
        SequenceOptions(transforms=STEPS, rate=100, channel_names=["ax", "ay"])
    with pytest.raises(ValidationError, match=r"transforms\[1\] \(envelope\).*rate"):
        SequenceOptions(transforms=STEPS, channel_names=["ax", "ay", "az"])
