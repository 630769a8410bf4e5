"""Maintainer script: copy the sentiment sentences bundled with this example from ../shared/data.

Not needed to run the example (its output is committed). Copies ``text_sentences/data.csv``
(3,000 rows, 273 kB) byte for byte and checks it against the SHA-256 recorded below, so a changed
source is noticed instead of silently bundled.

    python examples/text_sentiment/build_data.py [--source ../shared/data/text_sentences]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import shutil
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("MMCORE_SHARED_DATA") or HERE.parents[2] / "shared" / "data")
#: sha256 of text_sentences/data.csv as built by its build_text_sentences.py
SHA256 = "1873ba0ea724bff03111e19a8bfd594db38274a83f465be78055bb2981899d28"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", type=Path, default=SHARED / "text_sentences")
    args = parser.parse_args()
    source = args.source / "data.csv"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    if digest != SHA256:
        raise SystemExit(f"{source}: sha256 {digest}, expected {SHA256}; the source changed: "
                         "check it, then update SHA256 and data/README.md")
    target = HERE / "data" / "sentences.csv"
    shutil.copyfile(source, target)
    with open(target, newline="", encoding="utf-8") as f:
        counts = Counter((row["split"], row["label"]) for row in csv.DictReader(f))
    print(f"wrote {target}: {sum(counts.values())} rows, {dict(sorted(counts.items()))}")


if __name__ == "__main__":
    main()
