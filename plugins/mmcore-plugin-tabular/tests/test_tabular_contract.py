"""The tabular modality passes mmcore's plugin contract, with numeric, categorical and missing
cells, for both encoders."""

from __future__ import annotations

from pathlib import Path

from mmcore.testing import ModalityContract

COLUMNS = ["age", "city", "income"]
ROWS = [
    [34, "paris", 52000.0],
    [51, "lyon", None],          # a missing numeric cell
    [None, "paris", 61000.0],
    ["27", "", 38000.5],         # a number as text, a missing category
    [45, "nice", 47000.0],
]


class TabularContract(ModalityContract):
    plugin = "tabular"
    samples = ROWS
    bad_samples = [[34, "paris", "lots"], [1, 2], "not a row"]

    def build(self, tmp_path: Path, fit: bool = True, **changes):
        modality = super().build(tmp_path, fit=False, **changes)
        modality.columns = list(COLUMNS)  # as build_modalities sets them from the spec
        if fit:
            modality.fit(self.present_samples(tmp_path))
        return modality


class TestTabularMLPContract(TabularContract):
    options = {"hidden": [8], "size": 8, "embedding_size": 3}


class TestTabularTransformerContract(TabularContract):
    options = {"encoder": "ft_transformer", "d_token": 8, "heads": 2, "layers": 1, "size": 8,
               "dropout": 0.0, "scaling": "quantile"}
