"""The same experiment with a fusion from a research module, named by import path.

    mmcore validate examples/custom_fusion/spec_by_path.py

``my_research`` sits next to this file, and a spec file's folder is importable while the spec
loads. For a package you ``pip install``, the same path works from anywhere; register the
class from a plugin (``my_research/plugin.py``) to use it by a short name instead.
"""

import mmcore

spec = mmcore.Spec(
    name="custom-fusion-by-path",
    data={"path": "../av_digits/data/pairs.csv", "split_column": "split"},
    modalities={
        "image": {
            "plugin": "image",
            "column": "image",
            "options": {"size": [28, 28], "channels": 1},
        },
        "audio": {"plugin": "audio", "column": "audio", "options": {"sample_rate": 8000}},
    },
    fusion={"name": "my_research.fusions:HadamardFusion", "options": {"size": 64}},
    heads={"digit": {"target": "label"}},
    train={"epochs": 5, "batch_size": 32},
)
