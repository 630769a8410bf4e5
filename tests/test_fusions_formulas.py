"""Each fusion computes what its docstring says: the formulas, checked against direct math."""

from __future__ import annotations

import pytest
import torch

from mmcore.batch import Features, ModalityBatch
from mmcore.encoder import Encoder
from mmcore.fusions.attention import AttentionFusion
from mmcore.fusions.common import masked_softmax, resample
from mmcore.fusions.film import FiLMFusion
from mmcore.fusions.gated import GatedFusion
from mmcore.fusions.late import LateFusion
from mmcore.fusions.low_rank_tensor import LowRankTensorFusion
from mmcore.fusions.rnn import RNNFusion
from mmcore.fusions.tensor import TensorFusion
from mmcore.fusions.weighted import WeightedFusion
from mmcore.heads.classification import ClassificationHead
from mmcore.model import LateFusionModel, MultimodalModel, compose_model


def pooled(values: list[list[float]], present: list[bool]) -> Features:
    return Features(torch.tensor(values), torch.tensor(present))


def test_masked_softmax_ignores_masked_entries_and_gives_zeros_for_empty_rows() -> None:
    scores = torch.tensor([[1.0, 2.0, 3.0], [5.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    mask = torch.tensor([[True, False, True], [False, True, False], [False, False, False]])
    w = masked_softmax(scores, mask)
    e1, e3 = torch.tensor(1.0).exp(), torch.tensor(3.0).exp()
    torch.testing.assert_close(w[0], torch.stack([e1, torch.tensor(0.0), e3]) / (e1 + e3))
    torch.testing.assert_close(w[1], torch.tensor([0.0, 1.0, 0.0]))
    torch.testing.assert_close(w[2], torch.zeros(3))


def test_resample_interpolates_only_real_steps() -> None:
    values = torch.tensor([[0.0, 1.0, 2.0, 99.0], [7.0, 99.0, 99.0, 99.0], [99.0] * 4])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 0, 0]], dtype=torch.bool)
    features = Features(values.unsqueeze(-1), torch.tensor([True, True, False]), mask)
    out, valid = resample(features, 5)
    torch.testing.assert_close(out[0, :, 0], torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0]))
    torch.testing.assert_close(out[1, :, 0], torch.full((5,), 7.0))  # one step is repeated
    torch.testing.assert_close(out[2], torch.zeros(5, 1))  # absent
    assert valid.tolist() == [True, True, False]
    shrunk, _ = resample(features, 2)
    torch.testing.assert_close(shrunk[0, :, 0], torch.tensor([0.0, 2.0]))


def test_weighted_fusion_follows_its_formula() -> None:
    torch.manual_seed(0)
    fusion = WeightedFusion({"a": 2, "b": 3, "c": 2}, size=4, temperature=2.0, smoothing=0.3)
    with torch.no_grad():
        fusion.scores.copy_(torch.tensor([0.5, -1.0, 2.0]))
    features = {
        "a": pooled([[1.0, 2.0], [3.0, 4.0]], [True, True]),
        "b": pooled([[1.0, 0.0, 1.0], [9.0, 9.0, 9.0]], [True, False]),
        "c": pooled([[0.5, 0.5], [1.0, -1.0]], [True, True]),
    }
    out = fusion(features)
    for row, present in enumerate([["a", "b", "c"], ["a", "c"]]):
        idx = [["a", "b", "c"].index(m) for m in present]
        soft = torch.softmax(fusion.scores[idx] / 2.0, 0)
        w = 0.7 * soft + 0.3 / len(idx)
        z = [fusion.project.linear[m](features[m].values[row]) for m in present]
        expected = sum(wi * zi for wi, zi in zip(w, z, strict=True))
        torch.testing.assert_close(out[row], expected)


def test_weighted_fusion_with_one_modality_present_returns_its_projection() -> None:
    fusion = WeightedFusion({"a": 2, "b": 2}, size=3, smoothing=0.0)
    features = {"a": pooled([[1.0, 2.0]], [True]), "b": pooled([[5.0, 5.0]], [False])}
    torch.testing.assert_close(
        fusion(features)[0], fusion.project.linear["a"](features["a"].values[0])
    )


def test_rnn_modality_steps_skip_absent_modalities() -> None:
    """A sample lacking "b" is the RNN run over exactly [z_a, z_c], not over [z_a, 0, z_c]."""
    torch.manual_seed(0)
    fusion = RNNFusion({"a": 2, "b": 2, "c": 2}, cell="gru", hidden=4, project=3)
    present = [True, False, True]
    features = {
        m: pooled([[float(i + 1), -1.0]], [p])
        for i, (m, p) in enumerate(zip("abc", present, strict=True))
    }
    z = torch.stack([fusion.project.linear[m](features[m].values[0]) for m in "ac"]).unsqueeze(0)
    _, h = fusion.rnn(z)
    torch.testing.assert_close(fusion(features)[0], h[-1, 0])


def test_rnn_time_mode_needs_sequences() -> None:
    fusion = RNNFusion({"a": 2, "b": 2}, steps="time")
    seq = Features(torch.zeros(1, 3, 2), torch.tensor([True]), torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="steps='time' needs sequence features.*b gave pooled"):
        fusion({"a": seq, "b": pooled([[1.0, 2.0]], [True])})


def test_gated_fusion_gives_all_weight_to_the_only_present_modality() -> None:
    torch.manual_seed(0)
    fusion = GatedFusion({"a": 2, "b": 3}, size=4)
    features = {"a": pooled([[1.0, 2.0]], [True]), "b": pooled([[4.0, 4.0, 4.0]], [False])}
    expected = torch.tanh(fusion.project.linear["a"](features["a"].values[0]))
    torch.testing.assert_close(fusion(features)[0], expected)


def test_gated_fusion_with_two_modalities_is_the_papers_sigmoid_gate() -> None:
    torch.manual_seed(0)
    fusion = GatedFusion({"a": 2, "b": 3}, size=4)
    xa, xb = torch.randn(1, 2), torch.randn(1, 3)
    features = {"a": pooled(xa.tolist(), [True]), "b": pooled(xb.tolist(), [True])}
    g = fusion.gate(torch.cat([xa, xb, torch.ones(1, 2)], -1)).view(2, 4)
    z = torch.sigmoid(g[0] - g[1])
    ha, hb = torch.tanh(fusion.project.linear["a"](xa)), torch.tanh(fusion.project.linear["b"](xb))
    torch.testing.assert_close(fusion(features), z * ha + (1 - z) * hb)


def test_attention_fusion_without_any_modality_attends_to_the_cls_token_alone() -> None:
    torch.manual_seed(0)
    fusion = AttentionFusion({"a": 2, "b": 3}, d_model=8, heads=2, layers=1, dropout=0.0)
    mask = torch.tensor([[True, True, False]] * 2)
    features = {
        "a": Features(torch.randn(2, 2), torch.tensor([True, False])),
        "b": Features(torch.randn(2, 3, 3), torch.tensor([True, False]), mask),
    }
    alone = fusion.norm(fusion.encoder(fusion.cls))[0, 0]
    out = fusion(features)
    torch.testing.assert_close(out[1], alone)
    assert not torch.allclose(out[0], alone)


def test_tensor_fusion_is_an_mlp_of_the_outer_product() -> None:
    torch.manual_seed(0)
    fusion = TensorFusion({"a": 2, "b": 3}, project=2, size=4, hidden=5, dropout=0.0)
    features = {"a": pooled([[1.0, 2.0]], [True]), "b": pooled([[1.0, 1.0, 1.0]], [False])}
    za = torch.cat([fusion.project.linear["a"](features["a"].values[0]), torch.ones(1)])
    zb = torch.tensor([0.0, 0.0, 1.0])  # absent: only the constant
    torch.testing.assert_close(fusion(features)[0], fusion.mlp(torch.outer(za, zb).flatten()))


def test_tensor_fusion_refuses_an_intractable_product() -> None:
    with pytest.raises(ValueError, match="lower 'project' to at most"):
        TensorFusion({m: 4 for m in "abcdefg"}, project=16)


def test_low_rank_tensor_fusion_equals_tensor_fusion_with_the_recomposed_weight() -> None:
    torch.manual_seed(0)
    fusion = LowRankTensorFusion({"a": 2, "b": 3}, rank=3, size=4)
    xa, xb = torch.randn(5, 2), torch.randn(5, 3)
    present_b = torch.tensor([True, True, False, True, False])
    features = {"a": Features(xa, torch.ones(5, dtype=torch.bool)), "b": Features(xb, present_b)}
    weight = torch.einsum(
        "r,ris,rjs->ijs", fusion.rank_weights, fusion.factors["a"], fusion.factors["b"]
    )
    za = torch.cat([xa, torch.ones(5, 1)], -1)
    zb = torch.cat([xb * present_b.unsqueeze(-1), torch.ones(5, 1)], -1)
    expected = torch.einsum("bi,bj,ijs->bs", za, zb, weight) + fusion.bias
    torch.testing.assert_close(fusion(features), expected)


def test_film_without_its_condition_is_unmodulated() -> None:
    torch.manual_seed(0)
    fusion = FiLMFusion({"a": 2, "b": 3, "cond": 2}, size=4)
    assert fusion.condition == "cond"  # the last in sorted order
    features = {
        "a": pooled([[1.0, 2.0]], [True]),
        "b": pooled([[0.5, -1.0, 2.0]], [True]),
        "cond": pooled([[3.0, 3.0]], [False]),
    }
    h = [torch.relu(fusion.project[m](features[m].values[0])) for m in "ab"]
    expected = torch.cat([(h[0] + h[1]) / 2, torch.zeros(4)])
    torch.testing.assert_close(fusion(features)[0], expected)


def test_film_modulates_with_gamma_and_beta_from_the_condition() -> None:
    torch.manual_seed(0)
    fusion = FiLMFusion({"a": 2, "b": 3}, condition="a", size=4, include_condition=False)
    xa, xb = torch.tensor([[1.0, -2.0]]), torch.tensor([[0.5, -1.0, 2.0]])
    features = {"a": pooled(xa.tolist(), [True]), "b": pooled(xb.tolist(), [True])}
    delta_gamma, beta = fusion.film["b"](xa).chunk(2, -1)
    expected = torch.relu((1 + delta_gamma) * fusion.project["b"](xb) + beta)
    torch.testing.assert_close(fusion(features), expected)


@pytest.mark.parametrize(
    ("sizes", "options", "message"),
    [
        ({"a": 2}, {}, "at least two modalities"),
        ({"a": 2, "b": 2}, {"condition": "c"}, "condition 'c' is not one of the modalities"),
    ],
)
def test_film_rejects_bad_setups(sizes, options, message) -> None:
    with pytest.raises(ValueError, match=message):
        FiLMFusion(sizes, **options)


def test_late_fusion_averages_head_outputs_over_present_modalities() -> None:
    fusion = LateFusion({"a": 2, "b": 2, "c": 2}, size=3)
    present = {"a": [True, True, False], "b": [True, False, False], "c": [False, True, False]}
    features = {m: pooled([[0.0, 0.0]] * 3, p) for m, p in present.items()}
    outputs = {
        "a": torch.tensor([1.0, 2.0, 3.0]),
        "b": torch.tensor([3.0, 9.0, 9.0]),
        "c": torch.tensor([float("nan"), 4.0, 9.0]),
    }
    torch.testing.assert_close(fusion.combine(outputs, features), torch.tensor([2.0, 3.0, 0.0]))


def test_late_fusion_learned_mode_weights_present_modalities_by_softmax() -> None:
    fusion = LateFusion({"a": 2, "b": 2, "c": 2}, size=3, mode="learned")
    with torch.no_grad():
        fusion.scores.copy_(torch.tensor([0.0, 1.0, 2.0]))
    features = {
        m: pooled([[0.0, 0.0]], [p]) for m, p in zip("abc", [True, False, True], strict=True)
    }
    outputs = {m: torch.full((1, 2), float(i)) for i, m in enumerate("abc")}
    w = torch.softmax(torch.tensor([0.0, 2.0]), 0)
    torch.testing.assert_close(
        fusion.combine(outputs, features)[0], (w[0] * 0 + w[1] * 2).repeat(2)
    )


def test_late_fusion_runs_inside_the_model() -> None:
    """LateFusionModel runs each head per modality and merges with ``combine``."""

    class Identity(Encoder):
        def forward(self, batch):
            return self.features(batch.values, None, batch)

    torch.manual_seed(0)
    fusion = LateFusion({"a": 2, "b": 2}, size=4, dropout=0.0)
    head = ClassificationHead(4, "y", classes=["x", "y", "z"], dropout=0.0)
    model = compose_model({"a": Identity(2), "b": Identity(2)}, fusion, {"label": head})
    assert type(model) is LateFusionModel
    inputs = {
        "a": ModalityBatch(torch.randn(3, 2), torch.tensor([True, True, False])),
        "b": ModalityBatch(torch.randn(3, 2), torch.tensor([True, False, False])),
    }
    logits = model(inputs)["label"]
    per = {m: head(z) for m, z in fusion(model.encode(inputs)).items()}
    torch.testing.assert_close(logits[0], (per["a"][0] + per["b"][0]) / 2)
    torch.testing.assert_close(logits[1], per["a"][1])
    torch.testing.assert_close(logits[2], torch.zeros(3))


def test_each_composition_refuses_the_other_kind_of_fusion() -> None:
    """A late fusion's per-modality dict never reaches a head of MultimodalModel, and
    LateFusionModel never gets a fusion without ``combine``."""
    late = LateFusion({"a": 2, "b": 2}, size=4)
    joint = FiLMFusion({"a": 2, "b": 2}, size=4)
    with pytest.raises(TypeError, match="LateFusionModel"):
        MultimodalModel({}, late, {})
    with pytest.raises(TypeError, match="needs a PerModalityFusion"):
        LateFusionModel({}, joint, {})
    assert type(compose_model({}, joint, {})) is MultimodalModel
