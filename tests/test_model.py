"""Model assembly: one model from a spec, differentiable end to end."""

from __future__ import annotations

import pytest
import torch

import mmcore
from mmcore.model import LateFusionModel, MultimodalModel, build_modalities, build_model
from mmcore.spec import validate_spec

SPEC = {
    "data": {"path": "data.csv"},
    "modalities": {
        "a": {"plugin": "toy", "column": "x"},
        "b": {"plugin": "toy2", "column": "z", "options": {"hidden": 6, "output": "sequence"}},
    },
    "heads": {
        "label": {"target": "y", "options": {"classes": [0, 1, 2]}},
        "score": {"kind": "regression", "target": "s", "weight": 0.5},
    },
    "train": {"callbacks": []},
}


def test_backward_reaches_every_encoder_fusion_and_head(toy_registry):
    spec = validate_spec(SPEC, registry=toy_registry)
    modalities = build_modalities(spec, toy_registry)
    model = build_model(spec, modalities, toy_registry)
    inputs = {
        "a": modalities["a"].collate(
            [modalities["a"].preprocess(v) for v in ([1, 2], [3], [4, 5, 6])]
        ),
        "b": modalities["b"].collate(
            [modalities["b"].preprocess([0.5, 1.0]), None, modalities["b"].preprocess([2.0])]
        ),
    }
    outputs = model(inputs)
    assert outputs["label"].shape == (3, 3) and outputs["score"].shape == (3, 1)
    loss = model.heads["label"].loss(outputs["label"], torch.tensor([0, 1, 2]))
    loss = loss + model.heads["score"].loss(outputs["score"], torch.tensor([0.1, 0.2, 0.3]))
    loss.backward()
    for part in ("encoders.a", "encoders.b", "fusion", "heads.label", "heads.score"):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(part)]
        assert grads and all(g is not None for g in grads), part
        assert any(g.abs().sum() > 0 for g in grads), part


def test_absent_modality_rows_do_not_depend_on_their_values(toy_registry):
    spec = validate_spec(SPEC, registry=toy_registry)
    modalities = build_modalities(spec, toy_registry)
    model = build_model(spec, modalities, toy_registry).eval()
    a = modalities["a"].collate([modalities["a"].preprocess([1.0, 2.0])] * 2)
    b = modalities["b"].collate([None, None])
    out1 = model({"a": a, "b": b})["label"]
    b.values += 100.0  # garbage in the padding of absent rows
    out2 = model({"a": a, "b": b})["label"]
    assert torch.allclose(out1, out2) and torch.isfinite(out1).all()


#: the state-dict keys of a late-fusion model as runs saved them when the late fusion was a
#: flag that MultimodalModel read: checkpoints of that layout must still load
LATE_CHECKPOINT_KEYS = [
    "encoders.a.rnn.weight_ih_l0",
    "encoders.a.rnn.weight_hh_l0",
    "encoders.a.rnn.bias_ih_l0",
    "encoders.a.rnn.bias_hh_l0",
    "encoders.b.rnn.weight_ih_l0",
    "encoders.b.rnn.weight_hh_l0",
    "encoders.b.rnn.bias_ih_l0",
    "encoders.b.rnn.bias_hh_l0",
    "fusion.scores",
    "fusion.mlps.a.0.weight",
    "fusion.mlps.a.0.bias",
    "fusion.mlps.a.3.weight",
    "fusion.mlps.a.3.bias",
    "fusion.mlps.b.0.weight",
    "fusion.mlps.b.0.bias",
    "fusion.mlps.b.3.weight",
    "fusion.mlps.b.3.bias",
    "heads.label.mlp.0.weight",
    "heads.label.mlp.0.bias",
    "heads.label.mlp.3.weight",
    "heads.label.mlp.3.bias",
    "heads.score.mean",
    "heads.score.std",
    "heads.score.mlp.0.weight",
    "heads.score.mlp.0.bias",
    "heads.score.mlp.3.weight",
    "heads.score.mlp.3.bias",
]


def test_late_fusion_is_chosen_at_build_time_and_keeps_the_checkpoint_layout(toy_registry):
    late = {"name": "late", "options": {"size": 4, "hidden": 4, "mode": "learned"}}
    spec = validate_spec({**SPEC, "fusion": late}, registry=toy_registry)
    model = build_model(spec, registry=toy_registry)
    assert type(model) is LateFusionModel
    assert list(model.state_dict()) == LATE_CHECKPOINT_KEYS
    again = build_model(spec, registry=toy_registry)
    again.load_state_dict(model.state_dict(), strict=True)
    joint = build_model(validate_spec(SPEC, registry=toy_registry), registry=toy_registry)
    assert type(joint) is MultimodalModel


def test_a_fusion_with_the_old_late_flag_is_refused_with_the_way_forward():
    from mmcore.errors import PluginError
    from mmcore.model import compose_model

    class OldLate(mmcore.Fusion):
        late = True  # what older versions read instead of PerModalityFusion

        def __init__(self, input_sizes):
            super().__init__(input_sizes, output_size=4)

        def forward(self, features):  # pragma: no cover - never called
            raise AssertionError

    with pytest.raises(PluginError, match=r"OldLate sets late = True.*PerModalityFusion"):
        compose_model({}, OldLate({"a": 3}), {})


def test_heads_get_every_validated_field_as_a_keyword_and_do_not_validate_again(
    toy_registry, monkeypatch
):
    from mmcore.heads.options import RegressionOptions
    from mmcore.heads.regression import RegressionHead
    from mmcore.spec.options import keyword_arguments

    seen: dict = {}
    original = RegressionHead.__init__

    def spy(self, input_size, target, **options):
        seen.update(options)
        original(self, input_size, target, **options)

    monkeypatch.setattr(RegressionHead, "__init__", spy)
    model = build_model(validate_spec(SPEC, registry=toy_registry), registry=toy_registry)
    assert seen == keyword_arguments(RegressionOptions())  # defaults included
    assert model.heads["score"].options == RegressionOptions()
    with pytest.raises(TypeError, match="unexpected option.*hiden"):
        RegressionHead(4, "s", hiden=[3])  # by hand, a typo is still caught


def test_rnn_encoders_run_under_cpu_bf16_autocast():
    """oneDNN has no bf16 LSTM on CPU: run_rnn must fall back to float32 there."""
    from torch import nn

    from mmcore.layers import run_rnn

    rnn = nn.LSTM(4, 8, batch_first=True)
    x = torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    expected, _ = run_rnn(rnn, x, mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, last = run_rnn(rnn, x.bfloat16(), mask)
    assert out.dtype == torch.float32 and last.shape == (3, 8)
    assert torch.allclose(out, expected, atol=0.05)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_run_rnn_skips_packing_for_full_rows_with_identical_outputs(bidirectional):
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from mmcore.layers import _last_hidden, run_rnn

    torch.manual_seed(0)
    rnn = torch.nn.LSTM(3, 5, batch_first=True, bidirectional=bidirectional)
    x = torch.randn(4, 7, 3)
    mask = torch.ones(4, 7, dtype=torch.bool)
    outputs, last = run_rnn(rnn, x, mask)
    packed = pack_padded_sequence(x, torch.full((4,), 7), batch_first=True)
    ref_out, hidden = rnn(packed)
    ref_out, _ = pad_packed_sequence(ref_out, batch_first=True)
    torch.testing.assert_close(outputs, ref_out)
    torch.testing.assert_close(last, _last_hidden(rnn, hidden))
