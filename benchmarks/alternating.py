"""Alternating-round benchmarks on one torch thread: their table rows and their ``main``
(``tcn_fast_path.py``, ``optimizer_step.py``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import benchlib


def arm_rows(times: dict[str, list[float]], what: dict[str, str], reference: str,
             scale: float, digits: int) -> list[list[str]]:
    """Table rows of alternating arms, in ``what``'s order (arm -> what it is): each arm's
    median time (times ``scale``) with its range, and the median of the per-round speed
    ratios against ``reference``: the mean of the round's ``reference`` and ``control`` runs
    (the ``control`` row against ``reference`` alone, the noise floor)."""
    base = [(r + c) / 2 for r, c in zip(times[reference], times["control"], strict=True)]
    rows = []
    for arm, label in what.items():
        shown = [t * scale for t in times[arm]]
        ref = times[reference] if arm == "control" else base
        vs = [b / t for b, t in zip(ref, times[arm], strict=True)]
        ratio = (["(reference)", ""] if arm == reference
                 else [f"{benchlib.median(vs):.3f}x", benchlib.spread(vs)])
        rows.append([f"`{arm}`", label, f"{benchlib.median(shown):.{digits}f}",
                     benchlib.spread(shown), *ratio])
    return rows


def rounds_main(argv: list[str] | None, doc: str, key: str, title: str, rounds: int,
                compare: Callable[[int], Any],
                report: Callable[[Any, int, benchlib.Load], str]) -> int:
    """The ``main`` of a benchmark of alternating rounds on one torch thread: ``--rounds``
    (default ``rounds``) and ``--write FILE``; ``compare(rounds)`` measures, ``report(result,
    rounds, load)`` writes the section."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=rounds, help=f"default {rounds}")
    parser.add_argument("--write", type=Path, help="markdown file whose section to update")
    args = parser.parse_args(argv)
    benchlib.torch_one_thread()
    meter = benchlib.LoadMeter()
    result = compare(args.rounds)
    benchlib.publish(key, title, report(result, args.rounds, meter.stop()), args.write)
    return 0
