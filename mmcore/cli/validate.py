"""``mmcore validate SPEC``: check a spec file without training (exit 0, or 2 with errors)."""

from __future__ import annotations

import argparse


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="check a spec file: names, options and types")
    p.add_argument("spec", help="a Python spec file (or spec.json)")
    p.add_argument("overrides", nargs="*", help="field overrides, e.g. train.epochs=3")
    return p


def run(args: argparse.Namespace) -> int:
    from mmcore.spec import load_spec

    spec = load_spec(args.spec, args.overrides)
    names = ", ".join(f"{n} ({m.plugin_name})" for n, m in spec.modalities.items())
    fusion = spec.fusion.name if isinstance(spec.fusion.name, str) else spec.fusion.name.__name__
    print(
        f"{args.spec}: valid. modalities: {names}; fusion: {fusion}; heads: {', '.join(spec.heads)}"
    )
    return 0
