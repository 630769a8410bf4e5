"""Shared pieces of the trainer tests: a plugin with a fitted-state modality and a slow one
(loadable by entry point in a subprocess), tiny CSV data and a spec for it.

The plugin is importable as ``tests.train_toy``; :func:`install_entry_point` writes a
``.dist-info`` folder that makes ``importlib.metadata`` see it as the installed distribution
``mmcore-train-toy`` 1.0.0 when that folder is on ``sys.path`` (e.g. via ``PYTHONPATH``).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

import mmcore
from mmcore.plugins.discovery import new_plugin_manager
from mmcore.plugins.registry import Registry
from tests.toy import ToyEncoder, ToyModality

DIST, VERSION, PLUGIN = "mmcore-train-toy", "1.0.0", "train_toy"
#: seconds each training forward of a ``slowtoy`` encoder sleeps (subprocess kill test)
DELAY_ENV = "MMCORE_TEST_STEP_DELAY"
#: a file each training forward of a ``slowtoy`` encoder appends one byte to (the kill test
#: waits on it instead of sleeping)
MARK_ENV = "MMCORE_TEST_STEP_MARK"
CLASSES = ["a", "b", "c"]


class ScaledToyModality(ToyModality):
    """Standardises numbers with the train split's mean and std: fitted state to save."""

    def __init__(self, name, options, root=None):
        super().__init__(name, options, root)
        self.mean, self.std = 0.0, 1.0

    def fit(self, values):
        arr = np.concatenate([self.preprocess(v).ravel() for v in values])
        self.mean, self.std = float(arr.mean()), float(arr.std() or 1.0)

    def preprocess(self, value: Any) -> np.ndarray:
        return (super().preprocess(value) - self.mean) / self.std

    def save_state(self, directory: Path) -> None:
        (Path(directory) / "scale.json").write_text(json.dumps([self.mean, self.std]))

    def load_state(self, directory: Path) -> None:
        self.mean, self.std = json.loads((Path(directory) / "scale.json").read_text())

    def fingerprint(self) -> str:
        return f"{super().fingerprint()}|{self.mean}|{self.std}"


class SlowToyEncoder(ToyEncoder):
    def __init__(self, hidden: int, sequence: bool) -> None:
        super().__init__(hidden, sequence)
        self.delay = float(os.environ.get(DELAY_ENV, "0") or 0)
        self.mark = os.environ.get(MARK_ENV)

    def forward(self, batch):
        if self.training and self.mark:
            with open(self.mark, "ab") as fh:
                fh.write(b".")
        if self.training and self.delay:
            time.sleep(self.delay)
        return super().forward(batch)


class SlowToyModality(ToyModality):
    def build_encoder(self):
        return SlowToyEncoder(self.options.hidden, self.options.output == "sequence")


@mmcore.hookimpl
def register_modalities(register):
    register("scaled", "tests.train_toy:ScaledToyModality", "tests.toy:ToyOptions",
             "numbers standardised with fitted train-split statistics")
    register("slowtoy", "tests.train_toy:SlowToyModality", "tests.toy:ToyOptions",
             "numbers; the encoder sleeps per training forward when asked to")


def registry() -> Registry:
    """The built-ins plus this plugin, as the installed distribution would register it."""
    import sys

    pm = new_plugin_manager()
    pm.register(sys.modules[__name__], name=PLUGIN)
    return Registry(pm, distributions={PLUGIN: (DIST, VERSION)})


def install_entry_point(site: Path) -> Path:
    """A ``.dist-info`` in ``site`` declaring this module as the ``mmcore`` entry point."""
    info = site / f"{DIST.replace('-', '_')}-{VERSION}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DIST}\nVersion: {VERSION}\n")
    (info / "entry_points.txt").write_text(f"[mmcore]\n{PLUGIN} = tests.train_toy\n")
    return site


def write_data(path: Path, rows: int = 60, seed: int = 0, split_column: bool = True) -> Path:
    """A CSV with two numeric modalities ``x`` (informative) and ``z`` (weakly), a class
    label ``y`` and a regression target ``s``; with a ``split`` column 60/20/20."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["x", "z", "y", "s"] + (["split"] if split_column else []))
        for i in range(rows):
            label = i % 3
            x = 10.0 + label + rng.normal(0, 0.2)
            z = 0.5 * label + rng.normal(0, 1.0)
            split = "train" if i % 5 < 3 else "validation" if i % 5 == 3 else "test"
            writer.writerow([f"{x:.4f}", f"{z:.4f}", CLASSES[label], f"{x + z:.4f}"]
                            + ([split] if split_column else []))
    return path


def spec_dict(data: Path, cache: Path, **train: Any) -> dict[str, Any]:
    """A tiny spec over :func:`write_data`'s file; ``train`` overrides train settings."""
    settings = {"epochs": 3, "batch_size": 8, "lr": 0.05, "seed": 0, "progress": False,
                "callbacks": ["csv"]}
    settings.update(train)
    return {
        "name": "tiny",
        "data": {"path": str(data), "split_column": "split", "cache_dir": str(cache)},
        "modalities": {
            "a": {"plugin": "scaled", "column": "x", "options": {"hidden": 8}},
            "b": {"plugin": "slowtoy", "column": "z", "options": {"hidden": 8}},
        },
        "fusion": {"name": "concat", "options": {"size": 8, "hidden": 8, "dropout": 0.0}},
        "heads": {"label": {"target": "y", "options": {"hidden": [8], "dropout": 0.0}}},
        "train": settings,
    }


def labelled(tmp_path: Path, data: Path, registry: Registry, **train: Any) -> Any:
    """:func:`spec_dict` validated, its head's classes given (:data:`CLASSES`), its cache in
    ``tmp_path``; ``train`` overrides train settings."""
    from mmcore.spec import validate_spec

    spec = spec_dict(data, tmp_path / "cache", **train)
    spec["heads"]["label"]["options"]["classes"] = CLASSES
    return validate_spec(spec, registry=registry)


def write_spec(path: Path, spec: dict[str, Any]) -> Path:
    path.write_text(f"spec = {spec!r}\n")
    return path


#: a spec file defining its own fusion class; "SPEC" is replaced by a spec dict
FUSION_SPEC = '''
import torch
import mmcore


class MeanFusion(mmcore.Fusion):
    def __init__(self, input_sizes, size: int = 8):
        super().__init__(input_sizes, output_size=size)
        self.proj = torch.nn.ModuleDict(
            {m: torch.nn.Linear(d, size) for m, d in input_sizes.items()})

    def forward(self, features):
        return torch.stack([self.proj[m](f.pooled()) for m, f in sorted(features.items())]).mean(0)


spec = SPEC
spec["fusion"] = {"name": MeanFusion, "options": {"size": 6}}
'''


@contextlib.contextmanager
def process_registry() -> Iterator[None]:
    """The toy plugins in the process-wide registry (what the CLI uses) and one torch thread,
    both restored after."""
    import torch

    from mmcore.plugins import reset_registry

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    reset_registry(registry())
    try:
        yield
    finally:
        reset_registry(None)
        torch.set_num_threads(before)


def validated(tmp_path: Path, data: Path, reg: Registry, **train: Any) -> Any:
    """:func:`spec_dict` validated, its cache in ``tmp_path``; ``train`` overrides."""
    from mmcore.spec import validate_spec

    return validate_spec(spec_dict(data, tmp_path / "cache", **train), registry=reg)


def fit(spec: Any, out: Path, reg: Registry, **kw: Any) -> tuple[Any, dict[str, Any]]:
    """``Trainer(spec, output=out)``, quiet and without plots, and what its ``fit()`` gives."""
    from mmcore.train import Trainer

    trainer = Trainer(spec, output=out, registry=reg, plots=False, quiet=True, **kw)
    return trainer, trainer.fit()


def weights(path: Path) -> dict[str, Any]:
    """A safetensors file's tensors."""
    from safetensors.torch import load_file

    return load_file(str(path))


def same_tensors(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two state dicts hold the same names and bitwise equal tensors."""
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def callbacks_spec(tmp_path: Path, callbacks: list[str], epochs: int = 2) -> Path:
    """A spec file in ``tmp_path`` over :func:`write_data`'s file (written once) with
    ``train.callbacks``."""
    data = tmp_path / "data.csv"
    if not data.exists():
        write_data(data)
    spec = spec_dict(data, tmp_path / "cache", epochs=epochs, callbacks=callbacks)
    return write_spec(tmp_path / "spec.py", spec)


def train_quietly(spec: Path, run: Path) -> int:
    """``mmcore train SPEC --output RUN --quiet --no-report``'s exit code."""
    from mmcore.cli import main

    return main(["train", str(spec), "--output", str(run), "--quiet", "--no-report"])
