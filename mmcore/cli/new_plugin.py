"""``mmcore new-plugin NAME``: write a new modality plugin package that installs and passes
its tests as it is."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmcore.errors import MmcoreError


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(
        name,
        help="create a new modality plugin package (mmcore-plugin-NAME)",
        description="Write mmcore-plugin-NAME/ (pyproject with the entry point, options, "
        "modality, encoder, README and contract tests), ready for `pip install -e`.",
    )
    p.add_argument("name", metavar="NAME", help="modality name, e.g. 'eeg' or 'depth_map'")
    p.add_argument(
        "--kind", choices=["sequence", "vector"], default="sequence",
        help="sequence: values [T, F] of any length (padded, masked, a GRU); vector: values of "
        "a fixed size [F] (stacked, an MLP). Default: sequence",
    )
    p.add_argument(
        "--output", "-o", type=Path, default=Path("."), metavar="DIR",
        help="folder to create the package in (default: the current folder)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    from mmcore.scaffold import create_plugin, placeholders

    try:
        target = create_plugin(args.name, args.output, getattr(args, "kind", "sequence"))
    except ValueError as exc:
        raise MmcoreError(str(exc)) from None
    package = placeholders(args.name)["__PLUGIN_PACKAGE__"]
    print(f"created {target}")
    print("next:")
    print(f"  pip install -e '{target}[test]'   # the plugin, with pytest for its tests")
    print("  mmcore plugins          # should list", repr(args.name))
    print(f"  pytest {target / 'tests'}")
    print(f"  then edit {package}/modality.py and encoder.py for your data")
    return 0
