"""``mmcore train SPEC [--output DIR] [--resume] [--overwrite] [--quiet] [--no-test]
[--no-report] [--no-plots] [--trust-code] [--nproc N] [field=value ...]``.

Under ``torchrun`` every rank runs this command; ``--nproc N`` starts torchrun's launcher
itself for N processes on this machine (see ``docs/distributed.md``)."""

from __future__ import annotations

import argparse

from mmcore.cli import SPEC_TRUST_HELP
from mmcore.cli.workers import worker_argv


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="train the model a spec declares; writes a run folder")
    p.add_argument("spec", help="a Python spec file (or spec.json)")
    p.add_argument("overrides", nargs="*", help="field overrides, e.g. train.epochs=3")
    p.add_argument("--output", "-o", help="run folder (default: spec.output, else runs/<name>)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest complete checkpoint in the run folder")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier run in the same folder")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars or notes")
    p.add_argument("--no-test", action="store_true",
                   help="do not evaluate on the test split at the end (train.final_test=false): "
                   "for tuning on validation")
    p.add_argument("--no-report", action="store_true",
                   help="skip the modality report after training (it reuses the final "
                   "evaluation's pass of the encoders; each modality costs one more run of the "
                   "fusion and heads)")
    p.add_argument("--no-plots", action="store_true",
                   help="do not draw the training curves and confusion matrices at the end "
                   "(mmcore plots RUN draws them later)")
    p.add_argument("--trust-code", action="store_true", help=SPEC_TRUST_HELP)
    p.add_argument("--nproc", type=int, metavar="N",
                   help="train on N processes on this machine with train.strategy (ddp, or "
                   "fsdp; launches torchrun; train.batch_size is the global batch)")
    return p


def run(args: argparse.Namespace) -> int:
    from mmcore.distributed.launch import detect, launch, record_failure
    from mmcore.evaluate.ablation import format_report
    from mmcore.train import Trainer
    from mmcore.train.callbacks.summary import summary

    if args.nproc is not None and args.nproc != 1:
        return launch(args.nproc, worker_argv(args))
    env = detect()
    try:
        overrides = list(args.overrides)
        if getattr(args, "no_test", False):
            overrides.append("train.final_test=false")
        trainer = Trainer(
            args.spec, output=args.output, resume=args.resume, overwrite=args.overwrite,
            overrides=overrides, quiet=args.quiet,
            report=not getattr(args, "no_report", False), summary=False,  # printed below
            plots=not getattr(args, "no_plots", False),
            trust_code=getattr(args, "trust_code", False),
        )
        final = trainer.fit()
    except BaseException as exc:
        if env is not None:  # tell torchrun's launcher why this rank stopped
            record_failure(exc, env)
        raise
    if not trainer.is_main:
        return 0
    print(f"run saved to {trainer.run_dir}")
    print(summary(final))
    if trainer.modality_report is not None:
        print()
        print(format_report(trainer.modality_report))
    return 0
