"""av_digits, fused: spoken digit (audio) + handwritten digit (image) -> digit. The README demo.

    mmcore train examples/av_digits/spec.py
    mmcore train examples/av_digits/spec.py fusion.name=attention 'fusion.options={}'  # another
"""

from common import AUDIO, IMAGE, make

spec = make(
    "av_digits",
    {"image": IMAGE, "audio": AUDIO},
    # late: each modality predicts, the predictions are averaged; with train.modality_loss (1 by
    # default) each is also trained alone. Chosen on the validation split (docs/results.md).
    fusion={"name": "late", "options": {"size": 64, "hidden": 64}},
)
