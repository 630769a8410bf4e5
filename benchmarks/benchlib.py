"""Helpers shared by the benchmark scripts: the machine, the load on it, the av_digits spec,
and writing one script's section of ``docs/benchmarks.md``.

Imports no torch: ``startup.py`` times imports and must stay light itself.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import re
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MMCORE_SHARED_DATA") or REPO.parent / "shared" / "data")
AV_DIGITS = REPO / "examples" / "av_digits"
DOCS = REPO / "docs" / "benchmarks.md"
#: datasets must never reach for the network
OFFLINE_ENV = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}


def offline() -> None:
    """Set the offline variables for this process and its children."""
    os.environ.update(OFFLINE_ENV)


def torch_one_thread() -> None:
    """One torch thread, intra- and inter-op (every timing here runs on one, beside other jobs
    on a shared machine). Imports torch."""
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)


# -- the machine ---------------------------------------------------------------------------------
def cpu_model() -> str:
    info = Path("/proc/cpuinfo")
    if info.exists():
        found = re.search(r"^model name\s*:\s*(.+)$", info.read_text(), re.M)
        if found:
            return found.group(1).strip()
    return platform.processor() or platform.machine()


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_line() -> str:
    """CPU model, cores, OS, Python and torch versions, in one sentence."""
    return (
        f"{cpu_model()}, {usable_cpus()} CPU core(s) usable ({os.cpu_count()} visible), "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
        f"torch {package_version('torch')}"
    )


def today() -> str:
    return dt.date.today().isoformat()


# -- the load on the machine ---------------------------------------------------------------------
def _cpu_ticks() -> tuple[int, int, int] | None:
    """(busy, steal, total) jiffies of the whole machine from ``/proc/stat``."""
    stat = Path("/proc/stat")
    if not stat.exists():
        return None
    fields = [int(x) for x in stat.read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    steal = fields[7] if len(fields) > 7 else 0
    total = sum(fields[:8])
    return total - idle - steal, steal, total


def _own_cpu_seconds() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


@dataclass
class Load:
    """CPU use over a measured interval, in cores (1.0 = one core busy all the time)."""

    wall_s: float
    machine_cores: float | None
    own_cores: float
    steal_cores: float | None
    loadavg_start: float
    loadavg_end: float

    @property
    def others_cores(self) -> float | None:
        if self.machine_cores is None:
            return None
        return max(self.machine_cores - self.own_cores, 0.0)

    def sentence(self) -> str:
        cores = usable_cpus()
        parts = [f"1-minute load average {self.loadavg_start:.2f} at the start and "
                 f"{self.loadavg_end:.2f} at the end"]
        if self.machine_cores is not None:
            parts.append(
                f"the {cores} cores were busy {self.machine_cores:.2f} cores on average over the "
                f"{self.wall_s:.0f} s, {self.own_cores:.2f} of them this benchmark (its "
                f"subprocesses included) and {self.others_cores:.2f} other jobs"
            )
            if self.steal_cores:
                parts.append(f"{self.steal_cores:.2f} cores stolen by the hypervisor")
        return "; ".join(parts) + "."


class LoadMeter:
    """Measures how busy the machine was while a benchmark ran, and how much of that was us:
    the machine is shared, so other jobs' load is part of every figure's context."""

    def __init__(self) -> None:
        self._start = time.perf_counter()
        self._ticks = _cpu_ticks()
        self._own = _own_cpu_seconds()
        self._loadavg = os.getloadavg()[0]

    def stop(self) -> Load:
        wall = time.perf_counter() - self._start
        ticks = _cpu_ticks()
        hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        machine = steal = None
        if ticks is not None and self._ticks is not None:
            machine = (ticks[0] - self._ticks[0]) / hz / wall
            steal = (ticks[1] - self._ticks[1]) / hz / wall
        own = (_own_cpu_seconds() - self._own) / wall
        return Load(wall, machine, own, steal, self._loadavg, os.getloadavg()[0])


# -- statistics ----------------------------------------------------------------------------------
def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float]) -> str:
    """``min-max`` of a few repeats, for the reader to judge the noise."""
    return f"{min(values):.3g}-{max(values):.3g}"


# -- the av_digits spec ----------------------------------------------------------------------------
def av_digits_spec(
    cache_dir: Path, modalities: Sequence[str] = ("image", "audio"), **train: Any
) -> dict[str, Any]:
    """The README demo's parts (``examples/av_digits/common.py``: image + audio) with weighted
    fusion and ``train.modality_loss`` 0 (the demo's spec when the speed figures were taken)
    as a dict, on the **clean** bundled data (``examples/av_digits/data``, 800 real rows), so
    nothing is degraded or downloaded first; ``train`` overrides ``train.*`` fields.

    Validate it with ``base_dir=AV_DIGITS``.
    """
    os.environ["AV_DIGITS_CLEAN"] = "1"  # read by the example's common.py at import
    if str(AV_DIGITS) not in sys.path:
        sys.path.insert(0, str(AV_DIGITS))
    import common  # examples/av_digits/common.py

    if Path(common.TABLE) != AV_DIGITS / "data" / "pairs.csv":
        raise RuntimeError(f"{AV_DIGITS / 'common.py'} was imported before AV_DIGITS_CLEAN=1")
    parts = {"image": common.IMAGE, "audio": common.AUDIO}
    spec = common.make(
        "bench-av_digits", {m: parts[m] for m in modalities},
        fusion={"name": "weighted", "options": {"size": 64, "smoothing": 0.1}},
    )
    spec["data"] = {**spec["data"], "cache_dir": str(cache_dir)}
    # weighted fusion and no per-modality loss: the model the speed figures were measured on,
    # and what the hand-written loops they are compared with compute
    spec["train"] = {**spec["train"], "progress": False, "modality_loss": 0.0, **train}
    return spec


def gesture_spec(cache_dir: Path, **train: Any) -> dict[str, Any] | None:
    """A small model on real data: the ``gesture`` plugin's LSTM on the 5,296 fingertip
    trajectories of ``hand_gestures/point_history_labeled.csv`` (16 steps x 2 coordinates, 4
    classes), split 80/10/10 with a seed. ``None`` when the shared data is absent."""
    table = SHARED / "hand_gestures" / "point_history_labeled.csv"
    if not table.is_file():
        return None
    steps = [f"{axis}{i}" for i in range(16) for axis in ("x", "y")]
    return {
        "name": "bench-gesture",
        "data": {"path": str(table), "split": {"validation": 0.1, "test": 0.1, "seed": 0},
                 "cache_dir": str(cache_dir)},
        "modalities": {"motion": {"plugin": "gesture", "column": steps,
                                  "options": {"channels": 2}}},
        "heads": {"gesture": {"kind": "classification", "target": "label"}},
        "train": {"batch_size": 32, "lr": 2e-3, "seed": 0, "progress": False, **train},
    }


MODELS = {
    "av_digits": "the README demo's model as the speed figures were first taken "
    "(`examples/av_digits`: image + audio encoders, weighted fusion, a classification head, no "
    "per-modality loss) on the bundled clean av_digits data (800 real "
    "rows: 500 train, 100 validation, 200 test)",
    "gesture": "a small model: the `gesture` plugin's LSTM (hidden 64) and a classification "
    "head on the 5,296 real fingertip trajectories of "
    "`../shared/data/hand_gestures/point_history_labeled.csv` (seeded 80/10/10 split)",
}


def model_spec(model: str, cache_dir: Path, **train: Any) -> dict[str, Any] | None:
    """The spec dict of one of :data:`MODELS` (``None`` when its data is absent)."""
    if model == "av_digits":
        return av_digits_spec(cache_dir, **train)
    if model == "gesture":
        return gesture_spec(cache_dir, **train)
    raise ValueError(f"unknown model {model!r}: expected one of {', '.join(MODELS)}")


#: the five modality plugins, in the order the scaling benchmark adds them
FIVE = ("position", "gesture", "image", "text", "audio")
HAND = [f"hand_{axis}{i}" for i in range(21) for axis in ("x", "y")]
MOTION = [f"motion_{axis}{i}" for i in range(16) for axis in ("x", "y")]
FIVE_MODALITIES: dict[str, dict[str, Any]] = {
    "position": {"plugin": "position", "column": HAND,
                 "options": {"num_keypoints": 21, "dims": 2}},
    "gesture": {"plugin": "gesture", "column": MOTION, "options": {"channels": 2}},
    "image": {"plugin": "image", "column": "image",
              "options": {"size": 28, "channels": 1, "conv_channels": [16, 32, 32],
                          "feature_size": 64}},
    "text": {"plugin": "text", "column": "text",
             "options": {"vocab_size": 2000, "max_length": 64}},
    "audio": {"plugin": "audio", "column": "audio",
              "options": {"sample_rate": 8000, "n_fft": 256, "win_length": 200,
                          "hop_length": 80, "n_mels": 40, "max_seconds": 1.0, "truncate": True,
                          "conv_channels": [16, 32], "feature_size": 64, "lstm_hidden": 64}},
}


def five_modality_spec(
    table: Path, modalities: Sequence[str], cache_dir: Path | None, **train: Any
) -> dict[str, Any]:
    """A spec over the table :func:`write_five_modality_table` writes, using ``modalities``
    (names of :data:`FIVE`); image and audio paths resolve against the shared av_digits
    folder."""
    data: dict[str, Any] = {"path": str(table), "split_column": "split",
                            "root": str(SHARED / "av_digits")}
    if cache_dir is not None:
        data["cache_dir"] = str(cache_dir)
    return {
        "name": "bench-" + "-".join(modalities),
        "data": data,
        "modalities": {m: FIVE_MODALITIES[m] for m in modalities},
        "fusion": {"name": "concat", "options": {"size": 64, "hidden": 64}},
        "heads": {"digit": {"kind": "classification", "target": "label"}},
        "train": {"batch_size": 32, "lr": 2e-3, "seed": 0, "progress": False,
                  "modality_loss": 0.0, **train},  # as the speed figures were measured
    }


def write_five_modality_table(path: Path, rows: int, seed: int = 0) -> Path | None:
    """A table with all five modalities, built from real rows of ``../shared/data``.

    Each row is an av_digits row (MNIST image path, FSDD audio path, digit label, split),
    drawn at random without replacement, joined **by label only**, as AV-MNIST pairs its
    digits, with: a hand pose (21 landmarks) of ``keypoints_labeled.csv`` class
    ``digit % 4``, a fingertip trajectory of ``point_history_labeled.csv`` class
    ``digit % 4``, and a sentence of ``text_sentences/data.csv`` with sentiment ``digit %
    2``, each taken in turn from its class. The pairing is a construction for measuring
    speed and memory, not a real multimodal data set. ``None`` when the shared data is
    absent.
    """
    import csv

    import numpy as np

    sources = {
        "pairs": SHARED / "av_digits" / "pairs.csv",
        "hand": SHARED / "hand_gestures" / "keypoints_labeled.csv",
        "motion": SHARED / "hand_gestures" / "point_history_labeled.csv",
        "text": SHARED / "text_sentences" / "data.csv",
    }
    if not all(p.is_file() for p in sources.values()):
        return None

    def read(p: Path) -> list[dict[str, str]]:
        with p.open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))

    pairs = read(sources["pairs"])
    order = np.random.default_rng(seed).permutation(len(pairs))[:rows]
    by_class: dict[str, dict[str, list[dict[str, str]]]] = {}
    for name in ("hand", "motion", "text"):
        groups: dict[str, list[dict[str, str]]] = {}
        for row in read(sources[name]):
            groups.setdefault(row["label"], []).append(row)
        by_class[name] = groups
    taken = {name: {} for name in by_class}
    hand_cols = [c.removeprefix("hand_") for c in HAND]
    motion_cols = [c.removeprefix("motion_") for c in MOTION]
    fields = ["label", "split", "image", "audio", "text", *HAND, *MOTION]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for i in order:
            pair = pairs[int(i)]
            digit = int(pair["label"])

            def pick(name: str, label: str) -> dict[str, str]:
                group = by_class[name][label]
                k = taken[name].get(label, 0)
                taken[name][label] = k + 1
                return group[k % len(group)]

            hand, motion = pick("hand", str(digit % 4)), pick("motion", str(digit % 4))
            text = pick("text", str(digit % 2))
            out = {"label": digit, "split": pair["split"], "image": pair["image"],
                   "audio": pair["audio"], "text": text["text"]}
            out.update({new: hand[old] for new, old in zip(HAND, hand_cols, strict=True)})
            out.update({new: motion[old] for new, old in zip(MOTION, motion_cols, strict=True)})
            writer.writerow(out)
    return path


# -- docs/benchmarks.md --------------------------------------------------------------------------
def _markers(key: str) -> tuple[str, str]:
    return f"<!-- benchmarks/{key}.py: begin -->", f"<!-- benchmarks/{key}.py: end -->"


def section(key: str, title: str, body: str) -> str:
    """One script's section: a ``## title`` heading, then the body between markers.

    The heading comes before the begin marker so that a script that ends its own section at
    the next ``## `` heading (``data_pipeline.py``) leaves this one whole. The body must use
    ``###`` or deeper headings for the same reason.
    """
    if re.search(r"^## ", body, re.M):
        raise ValueError("a section body may not hold a '## ' heading; use '###'")
    begin, end = _markers(key)
    return f"## {title}\n{begin}\n\n{body.strip()}\n\n{end}\n"


def publish(key: str, title: str, body: str, write: Path | None) -> None:
    """Print script ``key``'s section and, with ``write`` (``--write FILE``), replace it in
    that markdown file."""
    print(section(key, title, body))
    if write:
        write_section(write, key, title, body)


def write_section(path: Path, key: str, title: str, body: str) -> None:
    """Replace script ``key``'s section of ``path`` (heading through end marker), or append it;
    everything else in the file is left as it is."""
    text = section(key, title, body)
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    begin, end = _markers(key)
    pattern = re.compile(
        r"^## [^\n]*\n" + re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S | re.M
    )
    if pattern.search(old):
        new = pattern.sub(lambda _: text, old, count=1)
    else:
        new = old.rstrip("\n") + "\n\n" + text
    path.write_text(new)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
