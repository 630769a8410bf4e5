"""``mmcore validate SPEC``: check a spec file without training (exit 0, or 2 with errors).

"valid" means ``mmcore train`` gets past set-up: besides names, options and types, the
device and precision are checked against this machine, ``train.monitor`` against the heads'
metrics, and (unless ``--no-data``) the data files and every column the spec names. torch is
imported only where an answer needs it: not for ``device=auto``/``cpu`` with a precision every
machine runs, a monitor of ``loss``, or ``--no-data``."""

from __future__ import annotations

import argparse
from typing import Any

from mmcore.errors import MmcoreError, SpecError


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="check a spec file: names, options and types")
    p.add_argument("spec", help="a Python spec file (or spec.json)")
    p.add_argument("overrides", nargs="*", help="field overrides, e.g. train.epochs=3")
    p.add_argument(
        "--no-data", action="store_true", help="skip the checks that read the data files"
    )
    return p


Problems = list[tuple[str, str]]


def _check_device(spec: Any) -> Problems:
    """``train.device`` and ``train.precision``, as the trainer resolves them."""
    train = spec.train
    if (train.device == "cpu" and train.precision != "fp16") or (
        train.device == "auto" and train.precision == "32"
    ):
        return []  # fine on every machine: no need to import torch to know
    from mmcore.train.settings import check_precision, resolve_device

    try:
        check_precision(train.precision, resolve_device(train.device, spec.source), spec.source)
    except SpecError as exc:
        return exc.problems
    return []


def _check_monitor(spec: Any, registry: Any) -> Problems:
    monitor = spec.train.monitor
    if monitor is None or monitor in {"loss", *(f"{h}.loss" for h in spec.heads)}:
        return []
    from mmcore.train.settings import check_monitor

    classes = {name: registry.get("head", h.kind).load() for name, h in spec.heads.items()}
    try:
        check_monitor(monitor, classes, spec.source)
    except SpecError as exc:
        return exc.problems
    return []


def _check_data(spec: Any, registry: Any) -> Problems:
    """The data layer's own checks before any work (:meth:`DataModule.check`)."""
    from mmcore.data.module import DataModule
    from mmcore.model import build_modalities

    try:
        DataModule(spec, build_modalities(spec, registry), registry, progress=False).check()
    except MmcoreError as exc:
        return [("", str(exc).replace("\n", "\n  "))]
    return []


def check_setup(spec: Any, registry: Any = None, data: bool = True) -> Problems:
    """Every problem ``mmcore train`` would meet during set-up, short of training: the device
    and precision, the monitor metric, and (``data=True``) the data files and columns."""
    from mmcore.plugins.default import get_registry

    registry = registry or get_registry()
    problems = _check_device(spec) + _check_monitor(spec, registry)
    if data:
        problems += _check_data(spec, registry)
    return problems


def run(args: argparse.Namespace) -> int:
    from mmcore.spec import load_spec

    spec = load_spec(args.spec, args.overrides)
    problems = check_setup(spec, data=not args.no_data)
    if problems:
        raise SpecError(spec.source, problems)
    names = ", ".join(f"{n} ({m.plugin_name})" for n, m in spec.modalities.items())
    fusion = spec.fusion.name if isinstance(spec.fusion.name, str) else spec.fusion.name.__name__
    print(
        f"{args.spec}: valid. modalities: {names}; fusion: {fusion}; heads: {', '.join(spec.heads)}"
        + (" (data not checked: --no-data)" if args.no_data else "")
    )
    return 0
