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
    """The README demo's spec (``examples/av_digits/spec.py``: image + audio, weighted fusion)
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
    spec["train"] = {**spec["train"], "progress": False, **train}
    return spec


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
