"""``mmcore train SPEC [--output DIR] [--resume] [--overwrite] [--quiet] [field=value ...]``."""

from __future__ import annotations

import argparse


class OverridesAnywhere(argparse.ArgumentParser):
    """Accepts ``field=value`` overrides after options too (``SPEC --quiet train.epochs=3``):
    argparse itself stops filling a ``nargs="*"`` positional once an option intervenes."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        late = [e for e in extras if "=" in e and not e.startswith("-")]
        namespace.overrides = [*(namespace.overrides or []), *late]
        return namespace, [e for e in extras if e not in late]


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="train the model a spec declares; writes a run folder")
    p.__class__ = OverridesAnywhere
    p.add_argument("spec", help="a Python spec file (or spec.json)")
    p.add_argument("overrides", nargs="*", help="field overrides, e.g. train.epochs=3")
    p.add_argument("--output", "-o", help="run folder (default: spec.output, else runs/<name>)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest complete checkpoint in the run folder")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier run in the same folder")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars or notes")
    return p


def run(args: argparse.Namespace) -> int:
    from mmcore.train import Trainer
    from mmcore.train.report import format_report
    from mmcore.train.trainer import summary

    trainer = Trainer(
        args.spec, output=args.output, resume=args.resume, overwrite=args.overwrite,
        overrides=args.overrides, quiet=args.quiet,
    )
    final = trainer.fit()
    print(f"run saved to {trainer.run_dir}")
    print(summary(final))
    if trainer.modality_report is not None:
        print()
        print(format_report(trainer.modality_report))
    return 0
