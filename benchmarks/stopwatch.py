"""Timing parts of a run from outside: :class:`Stopwatch` wraps methods and functions and adds
their wall and CPU seconds to named buckets (``training_arms.run_mmcore`` splits
``Trainer.fit()`` with it; ``scaling.py`` too)."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator
from typing import Any


class Stopwatch:
    """Wraps methods and functions to add their wall time (``seconds``) and process CPU time
    (``cpu``) to named buckets; a call made inside another timed call counts only in the
    outer one."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.calls: dict[str, list[tuple[float, float]]] = {}  # (wall, cpu) of each call
        self._depth = 0

    def wrap(self, fn: Callable, bucket: str) -> Callable:
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            self._depth += 1
            start, cpu = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
                    self.seconds[bucket] = self.seconds.get(bucket, 0.0) + wall
                    self.cpu[bucket] = self.cpu.get(bucket, 0.0) + cpu
                    self.calls.setdefault(bucket, []).append((wall, cpu))

        return timed

    def on(self, obj: Any, name: str, bucket: str) -> None:
        if not hasattr(obj, name):
            raise SystemExit(f"{type(obj).__name__} has no {name!r}: update the benchmark that "
                             "times it to the trainer's current structure")
        setattr(obj, name, self.wrap(getattr(obj, name), bucket))


@contextlib.contextmanager
def patched(module: Any, names: list[str], watch: Stopwatch, bucket: str) -> Iterator[None]:
    saved = {n: getattr(module, n) for n in names}
    try:
        for n in names:
            setattr(module, n, watch.wrap(saved[n], bucket))
        yield
    finally:
        for n, fn in saved.items():
            setattr(module, n, fn)
