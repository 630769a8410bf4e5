"""av_digits, fused: spoken digit (audio) + handwritten digit (image) -> digit. The README demo.

    mmcore train examples/av_digits/spec.py
    mmcore train examples/av_digits/spec.py fusion.name=attention   # another fusion
"""

from common import AUDIO, IMAGE, make

spec = make(
    "av_digits",
    {"image": IMAGE, "audio": AUDIO},
    fusion={"name": "weighted", "options": {"size": 64, "smoothing": 0.1}},
)
