"""Rows that could not be used: what is recorded about them and how they are reported."""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from mmcore.rows import ALL_MISSING_REASON, MISSING_REASON

__all__ = ["ALL_MISSING_REASON", "MISSING_REASON", "BadRow", "bad_row_message", "summary",
           "write_bad_rows"]
MISSING_TARGET_REASON = "missing target value"
#: where an unknown label's fix points: leaving such rows out (data.bad_rows='skip') would
#: silently shrink a test set, so the skip hint is not given for them
CLASSES_FIELD = "heads.{head}.options.classes"


def unknown_class_reason(head: str, reason: str) -> str:
    """``reason`` (a head could not encode a label) with the fix: declare the classes."""
    field = CLASSES_FIELD.format(head=head)
    return (f"{reason}; a head knows only the classes declared or seen when it was trained: "
            f"declare every class at training time with {field}=[...]")


@dataclass(frozen=True)
class BadRow:
    """One row left out (``data.bad_rows="skip"``) or reported (``"raise"``).

    Attributes:
        split: the split's name (``"train"``, ``"validation"``, ``"test"``, ``"external"``).
        row: 0-based index of the row within the split.
        column: the data column whose value was bad (several joined with ``","``).
        reason: what was wrong.
        file: the data file (or folder) the row came from, when known.
        source_row: 0-based index of the row in that file, when it differs from ``row``.
    """

    split: str
    row: int
    column: str
    reason: str
    file: str | None = None
    source_row: int | None = None

    def describe(self) -> str:
        where = f"split {self.split!r}, row {self.row}"
        if self.file is not None:
            where += f" (row {self.source_row if self.source_row is not None else self.row}"
            where += f" of {self.file})"
        return f"{where}, column {self.column!r}: {self.reason}"


def bad_row_message(bad: BadRow, hint: bool = True) -> str:
    """The text of the error raised for a bad row when ``data.bad_rows="raise"``."""
    message = f"bad data in {bad.describe()}"
    if hint and CLASSES_FIELD.partition("{head}")[2] + "=" not in bad.reason:
        message += (
            ". Fix the row, or set data.bad_rows='skip' to leave bad rows out (they are "
            "listed in the run folder)"
        )
    return message


def summary(bad_rows: Sequence[BadRow], rows_by_split: dict[str, int]) -> str:
    """A short report of skipped rows for stderr."""
    by_split = Counter(b.split for b in bad_rows)
    parts = [
        f"{split}: {count} of {rows_by_split.get(split, count) + count}"
        for split, count in sorted(by_split.items())
    ]
    reasons = Counter((b.column, b.reason) for b in bad_rows)
    lines = [f"mmcore: skipped {len(bad_rows)} bad row(s) ({'; '.join(parts)})"]
    for (column, reason), count in reasons.most_common(5):
        lines.append(f"  {count} x column {column!r}: {reason}")
    if len(reasons) > 5:
        lines.append(f"  ... and {len(reasons) - 5} other reason(s)")
    first = bad_rows[0]
    lines.append(f"  first: {first.describe()}")
    return "\n".join(lines)


def write_bad_rows(bad_rows: Sequence[BadRow], path: Path) -> None:
    """Write ``bad_rows`` as CSV when ``path`` ends in ``.csv``, else as a JSON list."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    records = [asdict(b) for b in bad_rows]
    if path.suffix.lower() == ".csv":
        names = ["split", "row", "column", "reason", "file", "source_row"]
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=names)
            writer.writeheader()
            writer.writerows(records)
    else:
        path.write_text(json.dumps(records, indent=2) + "\n", encoding="utf-8")
