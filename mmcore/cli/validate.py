"""``mmcore validate SPEC``: check a spec file without training (exit 0, or 2 with errors).

"valid" means ``mmcore train`` gets past set-up: besides names, options and types, the
device and precision are checked against this machine, ``train.monitor`` against the heads'
metrics, and (unless ``--no-data``) the data files and every column the spec names. torch is
imported only where an answer needs it: not for ``device=auto``/``cpu`` with a precision every
machine runs, a monitor of ``loss``, or ``--no-data``. The data checks read csv headers and
parquet footers and only the columns they check (:mod:`mmcore.data.tables`), without
``datasets`` (still used for json, ``save_to_disk`` folders, ``data.dataset`` objects and
streaming); the modalities are built from their options without their encoders, and the
heads' options are checked against the train targets with the built-in heads' torch-free
target side (:mod:`mmcore.heads.targets`); a plugin's head class is imported, torch with it
if it is a torch module."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mmcore.cli import SPEC_TRUST_HELP
from mmcore.errors import MmcoreError, SpecError


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="check a spec file: names, options and types")
    p.add_argument("spec", help="a Python spec file (or spec.json)")
    p.add_argument("overrides", nargs="*", help="field overrides, e.g. train.epochs=3")
    p.add_argument(
        "--no-data", action="store_true", help="skip the checks that read the data files"
    )
    p.add_argument("--trust-code", action="store_true", help=SPEC_TRUST_HELP)
    return p


Problems = list[tuple[str, str]]


def _check_device(spec: Any) -> Problems:
    """``train.device`` and ``train.precision``, as the trainer resolves them."""
    train = spec.train
    if (train.device == "cpu" and train.precision != "fp16") or (
        train.device == "auto" and train.precision == "32"
    ):
        return []  # fine on every machine: no need to import torch to know
    from mmcore.strategy import resolve_device
    from mmcore.train.settings import check_precision

    try:
        check_precision(train.precision, resolve_device(train.device, spec.source), spec.source)
    except SpecError as exc:
        return exc.problems
    return []


def _check_monitor(spec: Any, registry: Any) -> Problems:
    monitor = spec.train.monitor
    if monitor is None or monitor in {"loss", *(f"{h}.loss" for h in spec.heads)}:
        return []
    from mmcore.heads.targets import check_monitor, head_targets

    # a built-in head's metric names from its torch-free side; a plugin's head class is loaded
    classes = {name: head_targets(registry.get("head", h.kind)) for name, h in spec.heads.items()}
    try:
        check_monitor(monitor, classes, spec.source)
    except SpecError as exc:
        return exc.problems
    return []


def _check_data(spec: Any, registry: Any, report: dict[str, Any] | None = None) -> Problems:
    """The data layer's own checks before any work (:meth:`DataModule.check`); ``report``
    receives the rows of each split (``"splits"``) and the split warnings (``"warnings"``)."""
    from mmcore.data.modalities import build_modalities
    from mmcore.data.module import DataModule

    try:
        dm = DataModule(spec, build_modalities(spec, registry), registry, progress=False)
        sizes = dm.check()
    except MmcoreError as exc:
        return [("", str(exc).replace("\n", "\n  "))]
    if report is not None:
        report["splits"], report["warnings"] = sizes, list(dm.split_warnings)
    return []


def check_setup(
    spec: Any, registry: Any = None, data: bool = True, report: dict[str, Any] | None = None
) -> Problems:
    """Every problem ``mmcore train`` would meet during set-up, short of training: the device
    and precision, the monitor metric, and (``data=True``) the data files and columns. With
    ``report`` (a dict), the data check puts there the rows of each split (``"splits"``: split
    -> rows, ``None`` when streamed) and why a split is empty or missing (``"warnings"``)."""
    from mmcore.plugins.default import get_registry

    registry = registry or get_registry()
    problems = _check_device(spec) + _check_monitor(spec, registry)
    if data:
        problems += _check_data(spec, registry, report)
    return problems


def split_sizes(sizes: dict[str, int | None]) -> str:
    """``"train 500 rows, validation 100, test 200"`` (a streamed split: ``streamed``)."""
    parts = []
    for i, (name, rows) in enumerate(sizes.items()):
        count = "streamed" if rows is None else f"{rows:,}" + (" rows" if i == 0 else "")
        parts.append(f"{name} {count}")
    return ", ".join(parts) or "none"


def run(args: argparse.Namespace) -> int:
    from mmcore.spec import load_spec

    spec = load_spec(args.spec, args.overrides, trust_code=args.trust_code)
    report: dict[str, Any] = {}
    problems = check_setup(spec, data=not args.no_data, report=report)
    if problems:
        raise SpecError(spec.source, problems)
    names = ", ".join(f"{n} ({m.plugin_name})" for n, m in spec.modalities.items())
    fusion = spec.fusion.name if isinstance(spec.fusion.name, str) else spec.fusion.name.__name__
    print(
        f"{args.spec}: valid. modalities: {names}; fusion: {fusion}; heads: {', '.join(spec.heads)}"
        + (" (data not checked: --no-data)" if args.no_data else "")
    )
    if "splits" in report:
        print(f"splits: {split_sizes(report['splits'])}")
    for warning in report.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    return 0
