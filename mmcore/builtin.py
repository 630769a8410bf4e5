"""mmcore's own plugin: the built-in fusions, heads and callbacks, registered through the
same hooks as any third-party plugin."""

from __future__ import annotations

from mmcore.plugins.hookspecs import hookimpl

_F = "mmcore.fusions"


@hookimpl
def register_fusions(register):
    for name, impl, options, description in [
        ("concat", "concat:ConcatFusion", "ConcatOptions",
         "early fusion: concatenated pooled features, then an MLP"),
        ("weighted", "weighted:WeightedFusion", "WeightedOptions",
         "projections summed with learned softmax weights over the present modalities"),
        ("rnn", "rnn:RNNFusion", "RNNOptions",
         "an LSTM/GRU over the modalities (one step each) or over time-aligned sequences"),
        ("gated", "gated:GatedFusion", "GatedOptions",
         "gated multimodal units (Arevalo et al., 2017)"),
        ("attention", "attention:AttentionFusion", "AttentionOptions",
         "transformer over every modality's tokens, read at a CLS token"),
        ("tensor", "tensor:TensorFusion", "TensorOptions",
         "tensor fusion: outer product of the modalities (Zadeh et al., 2017)"),
        ("low_rank_tensor", "low_rank_tensor:LowRankTensorFusion", "LowRankTensorOptions",
         "low-rank multimodal fusion (Liu et al., 2018)"),
        ("film", "film:FiLMFusion", "FiLMOptions",
         "one modality scales and shifts the others' features (Perez et al., 2018)"),
        ("late", "late:LateFusion", "LateOptions",
         "one prediction per modality, averaged; models no interactions"),
    ]:
        register(name, f"{_F}.{impl}", f"{_F}.options:{options}", description)


@hookimpl
def register_heads(register):
    h = "mmcore.heads"
    register("classification", f"{h}.classification:ClassificationHead",
             f"{h}.options:ClassificationOptions", "single-label classification (cross-entropy)")
    register("multilabel", f"{h}.multilabel:MultiLabelHead", f"{h}.options:MultiLabelOptions",
             "multi-label classification (sigmoid + binary cross-entropy)")
    register("regression", f"{h}.regression:RegressionHead", f"{h}.options:RegressionOptions",
             "regression of one or more values (MSE, L1 or Huber)")
