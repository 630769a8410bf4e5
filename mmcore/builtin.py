"""mmcore's own plugin: the built-in fusions, heads and callbacks, registered through the
same hooks as any third-party plugin."""

from __future__ import annotations

from mmcore.plugins.hookspecs import hookimpl

_F = "mmcore.fusions"


@hookimpl
def register_fusions(register):
    register("concat", f"{_F}.concat:ConcatFusion", f"{_F}.options:ConcatOptions",
             "early fusion: concatenated pooled features, then an MLP")


@hookimpl
def register_heads(register):
    h = "mmcore.heads"
    register("classification", f"{h}.classification:ClassificationHead",
             f"{h}.options:ClassificationOptions", "single-label classification (cross-entropy)")
    register("multilabel", f"{h}.multilabel:MultiLabelHead", f"{h}.options:MultiLabelOptions",
             "multi-label classification (sigmoid + binary cross-entropy)")
    register("regression", f"{h}.regression:RegressionHead", f"{h}.options:RegressionOptions",
             "regression of one or more values (MSE, L1 or Huber)")
