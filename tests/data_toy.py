"""A tiny modality and a registry holding it, and the tables and set-up the data-layer tests
(test_data*.py) share."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import mmcore
from mmcore.batch import Features, ModalityBatch
from mmcore.collate import pad_sequences
from mmcore.data import DataModule
from mmcore.encoder import Encoder
from mmcore.io import load_array, open_binary, resolve_path
from mmcore.modality import Modality, ModalityOptions
from mmcore.model import build_modalities
from mmcore.plugins.discovery import new_plugin_manager
from mmcore.plugins.registry import Registry
from mmcore.spec import validate_spec

FILE_SUFFIXES = (".png", ".wav", ".bin")


class NumOptions(ModalityOptions):
    scale: float = 1.0
    center: bool = False


class NumEncoder(Encoder):
    def __init__(self) -> None:
        super().__init__(4)
        self.proj = nn.Linear(1, 4)

    def forward(self, batch: ModalityBatch) -> Features:
        return self.features(self.proj(batch.values), batch.mask, batch)


class NumModality(Modality[NumOptions]):
    """A number, a list of numbers, a JSON list, or a path (relative to ``root``) to an
    array file (.npy/.csv/.json) or any other file (read as ``[[its size in bytes]]``) ->
    float32 ``[T, 1]``. Non-finite values are bad input. Counts its preprocess calls."""

    calls = 0

    def __init__(self, name: str, options: NumOptions, root: Path | None = None):
        super().__init__(name, options, root)
        self.mean = 0.0
        self.fitted_on: list[Any] | None = None

    def fit(self, values) -> None:
        self.fitted_on = list(values)
        if self.options.center:
            self.mean = float(np.mean([np.mean(self._read(v)) for v in values]))

    def fingerprint(self) -> str:
        return f"{super().fingerprint()}|mean={self.mean!r}"

    def _read(self, value: Any) -> np.ndarray:
        if isinstance(value, dict):  # an undecoded datasets Image/Audio cell
            stream, _ = open_binary(value, self.root)
            with stream:
                return np.array([[len(stream.read())]], dtype=np.float32)
        if isinstance(value, str) and value.lower().endswith(FILE_SUFFIXES):
            return np.array([[resolve_path(value, self.root).stat().st_size]], dtype=np.float32)
        if isinstance(value, str):
            try:
                return np.array([float(value)], dtype=np.float32)
            except ValueError:
                pass  # a path or a JSON list
        return load_array(value, self.root)

    def preprocess(self, value: Any) -> np.ndarray:
        type(self).calls += 1
        arr = np.asarray(self._read(value), dtype=np.float32).reshape(-1, 1)
        if not np.isfinite(arr).all():
            raise ValueError("value is not finite")
        return (arr - self.mean) * self.options.scale

    def collate(self, items) -> ModalityBatch:
        return pad_sequences(items, empty_shape=(1,), dtype=torch.float32)

    def build_encoder(self) -> Encoder:
        return NumEncoder()


class ToyPlugin:
    @mmcore.hookimpl
    def register_modalities(self, register):
        register("num", NumModality, NumOptions, "numbers for the data-layer tests")


def toy_registry() -> Registry:
    pm = new_plugin_manager()
    pm.register(ToyPlugin(), name="testplugin")
    return Registry(pm)


def make_spec(registry: Registry, data: dict[str, Any], modalities: dict[str, Any] | None = None,
              heads: dict[str, Any] | None = None, base_dir: Path | None = None):
    modalities = modalities or {"x": {"plugin": "num", "column": "x"}}
    heads = heads or {"label": {"kind": "classification", "target": "label"}}
    return validate_spec(
        {"data": data, "modalities": modalities, "heads": heads},
        registry=registry, base_dir=base_dir,
    )


# -- tables and set-up ----------------------------------------------------------------------

def write_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def table(n: int = 30, split: bool = True) -> list[dict]:
    names = ["train"] * (n - 10) + ["validation"] * 5 + ["test"] * 5
    rows = []
    for i in range(n):
        row = {"x": float(i), "label": "ab"[i % 2]}
        if split:
            row["split"] = names[i]
        rows.append(row)
    return rows


def setup(registry, data, tmp_path, fit=True, modalities=None, heads=None, base_dir=None, **kw):
    data = {"cache_dir": str(tmp_path / "cache"), **data}
    spec = make_spec(registry, data, modalities, heads, base_dir=base_dir)
    dm = DataModule(spec, build_modalities(spec, registry), registry=registry, progress=False, **kw)
    dm.setup(fit=fit)
    return dm


def all_rows(dm: DataModule, split: str) -> tuple[list[float], list[int]]:
    """x values (first step) and split row indices of a split, in order."""
    xs, index = [], []
    for batch in dm.loader(split, batch_size=7, shuffle=False):
        xs += batch.inputs["x"].values[:, 0, 0].tolist()
        index += batch.index.tolist()
    return xs, index


def two_modality_rows() -> list[dict]:
    rows = [
        {"x": float(i), "y": float(i), "label": "ab"[i % 2], "split": "train"} for i in range(10)
    ]
    rows[3]["y"] = None  # lacks y
    rows[5]["x"] = None
    rows[5]["y"] = None  # lacks both
    return rows


TWO = {"x": {"plugin": "num", "column": "x"}, "y": {"plugin": "num", "column": "y"}}
