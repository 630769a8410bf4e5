"""``mmcore plugins``: what is installed, what each plugin provides, and what failed."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="list installed plugins and what they provide")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    return p


def run(args: argparse.Namespace) -> int:
    from mmcore.plugins import get_registry

    registry = get_registry()
    plugins = sorted(registry.plugins.values(), key=lambda p: (p.name != "mmcore", p.name))
    clashes = registry.clashes()
    if args.json:
        out = {
            "plugins": [asdict(p) for p in plugins],
            "clashes": [
                {
                    "kind": kind,
                    "name": name,
                    "plugins": [r.plugin for r in regs],
                    "distributions": [r.distribution for r in regs],
                }
                for (kind, name), regs in sorted(clashes.items())
            ],
        }
        print(json.dumps(out, indent=2))
        return 0
    for p in plugins:
        where = f"{p.distribution or '?'} {p.version or ''}".strip()
        print(f"{p.name}  [{p.status}]  {where}")
        for kind, names in sorted(p.provides.items()):
            print(f"    {kind}: {', '.join(sorted(names))}")
        if p.error:
            print(f"    error: {p.error}")
    for (kind, name), regs in sorted(clashes.items()):
        who = ", ".join(f"{r.plugin} ({r.distribution})" for r in regs)
        print(f"clash: {kind} {name!r} is registered by {who}")
    return 0
