"""A spec whose fusion is a class defined right here.

    mmcore validate examples/custom_fusion/spec.py
    mmcore train examples/custom_fusion/spec.py train.epochs=2

The run folder keeps a copy of this file, so the trained model loads again without it.
"""

import torch

import mmcore
from mmcore.fusions.common import Projection, presence


class MaxPoolFusion(mmcore.Fusion):
    """The element-wise maximum of the present modalities' projections."""

    def __init__(self, input_sizes, size: int = 64):
        super().__init__(input_sizes, output_size=size)
        self.project = Projection(input_sizes, size)

    def forward(self, features):
        z = self.project(features)  # [B, M, size]; absent rows are zero...
        present = presence(features, self.modalities)  # [B, M]
        # ...but zero could win a max, so absent modalities are taken out of the max instead,
        # and a sample with no modality gets zeros rather than -inf.
        z = z.masked_fill(~present.unsqueeze(-1), float("-inf"))
        best = z.max(dim=1).values
        return torch.where(present.any(dim=1, keepdim=True), best, torch.zeros_like(best))


spec = mmcore.Spec(
    name="custom-fusion",
    data={"path": "../av_digits/data/pairs.csv", "split_column": "split"},
    modalities={
        "image": {
            "plugin": "image",
            "column": "image",
            "options": {"size": [28, 28], "channels": 1},
        },
        "audio": {"plugin": "audio", "column": "audio", "options": {"sample_rate": 8000}},
    },
    fusion={"name": MaxPoolFusion, "options": {"size": 64}},
    heads={"digit": {"target": "label"}},
    train={"epochs": 5, "batch_size": 32},
)
