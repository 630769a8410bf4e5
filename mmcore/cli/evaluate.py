"""``mmcore evaluate RUN_DIR [--split NAME | --data PATH] [--robustness] [--trust-code]
[field=value ...]``: metrics, the modality report and (``--robustness``) every subset of
modalities with their Shapley values. The overrides allowed after training are
``data.allow_missing=true``, ``data.bad_rows=skip`` and ``train.eval_batch_size=N``. The
figures are added to the run's model card (``README.md``, :mod:`mmcore.run.card`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mmcore.cli.workers import worker_argv


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(
        name, help="evaluate a trained run on a split or a data file, with a modality report"
    )
    p.add_argument("run_dir", help="a run folder written by `mmcore train`")
    p.add_argument("overrides", nargs="*", metavar="field=value",
                   help="how rows are read: data.allow_missing=true (rows lacking a "
                   "modality are masked), data.bad_rows=skip (bad rows left out) or "
                   "train.eval_batch_size=N (rows per batch)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--split", help="a split of the run's data (default: test, else validation)")
    where.add_argument("--data", help="a data file with the same columns as the training data")
    p.add_argument("--no-report", action="store_true", help="skip the modality report")
    p.add_argument("--per-class", action="store_true",
                   help="print each class's precision, recall, F1, support and predicted count "
                   "(classes neither a target nor predicted are left out)")
    p.add_argument("--robustness", action="store_true",
                   help="also evaluate every subset of modalities and each modality's exact "
                   "Shapley value (2^M evaluations), written to robustness.json")
    p.add_argument("--hide-drifting", action="store_true",
                   help="also evaluate with the modalities whose inputs drift from the training "
                   "split hidden from every row (docs/evaluation.md#input-drift)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--nproc", type=int, metavar="N",
                   help="evaluate on N processes on this machine, each on its shard of the "
                   "split (launches torchrun; the figures cover the whole split)")
    p.add_argument("--trust-code", action="store_true",
                   help="allow the run's spec.json to name a fusion by Python file path (such "
                   "as the spec.py copied for a fusion defined in the spec file); this "
                   "executes that file, so use it only for runs you trust")
    return p


def run(args: argparse.Namespace) -> int:
    from mmcore.distributed.launch import launch
    from mmcore.distributed.selection import worker_strategy
    from mmcore.evaluate.ablation import format_report
    from mmcore.inference.predict import load
    from mmcore.run.layout import MODALITY_REPORT

    if getattr(args, "nproc", None) not in (None, 1):
        return launch(args.nproc, worker_argv(args))
    with worker_strategy() as strategy:  # one process, unless started by torchrun
        predictor = load(args.run_dir, device=args.device, trust_code=args.trust_code,
                         overrides=args.overrides, strategy=strategy)
        # one evaluation of each subset of modalities for the metrics and both reports
        result = predictor.evaluate(args.split, data=args.data, report=not args.no_report,
                                    robustness=getattr(args, "robustness", False))
        report = result.pop("modality_report", None)
        robust = result.pop("robustness", None)
        drift = None
        if strategy.is_main:
            from mmcore.drift import evaluate_drift

            drift = evaluate_drift(predictor, args.split, data=args.data,
                                   hide=getattr(args, "hide_drifting", False))
    if not strategy.is_main:  # every process has the figures; the first one prints them
        return 0
    card = _update_card(predictor.run_dir, result, report, args)
    if args.json:
        extra = {"robustness": robust} if robust is not None else {}
        print(json.dumps({**result, "modality_report": report, "drift": drift, **extra},
                         indent=2))
        return 0
    print(f"{result['split']} ({result['rows']} rows)")
    width = max((len(k) for k in result["metrics"]), default=0)
    for key, value in result["metrics"].items():
        print(f"  {key.ljust(width)}  {value:.4f}")
    if getattr(args, "per_class", False):
        for head, classes in result.get("per_class", {}).items():
            _print_per_class(head, classes)
    if report is not None:
        print()
        print(format_report(report))
        print(f"\nmodality report written to {predictor.run_dir / MODALITY_REPORT}")
    if drift is not None:
        _print_drift(drift)
    if robust is not None:
        from mmcore.evaluate.ablation import format_robustness
        from mmcore.run.layout import ROBUSTNESS

        print()
        print(format_robustness(robust))
        print(f"\nrobustness report written to {predictor.run_dir / ROBUSTNESS}")
    if card is not None:
        print(f"\nmodel card updated: {card}")
    return 0


def _update_card(run_dir: Path, result: dict[str, Any], report: dict[str, Any] | None,
                 args: argparse.Namespace) -> Path | None:
    """The run's card with this evaluation in it; a card that cannot be written is a warning
    (the figures are printed all the same)."""
    from mmcore.run.card import write_evaluation

    try:
        return write_evaluation(run_dir, result, report, data=args.data,
                                overrides=args.overrides)
    except OSError as error:
        print(f"warning: the model card in {run_dir} was not updated: {error}", file=sys.stderr)
        return None


def _print_per_class(head: str, classes: dict[str, dict[str, Any]]) -> None:
    """One row per class that is a target or predicted (a head's report may list others: a
    class with support 0 that was never predicted is not shown), with how many rows were
    predicted as it."""
    shown = {label: r for label, r in classes.items()
             if r.get("support", 0) > 0 or r.get("predicted", 1) > 0}
    pad = max((len(c) for c in shown), default=5)
    pad = max(pad, len("class"))
    print(f"\n  {head}: {'class'.ljust(pad)}  precision  recall  f1      support  predicted")
    for label, r in shown.items():
        predicted = r.get("predicted", "")
        print(f"  {' ' * len(head)}  {label.ljust(pad)}  {r['precision']:.4f}     "
              f"{r['recall']:.4f}  {r['f1']:.4f}  {str(r['support']).ljust(7)}  {predicted}")


def _print_drift(drift: dict) -> None:
    from mmcore.drift import format_drift

    print()
    print(format_drift(drift))
    for name in drift["drifting"]:
        entry = drift["modalities"][name]
        print(f"warning: the inputs of modality {name!r} drift from the training split "
              f"(score {entry['score']:.3f} > {entry['threshold']:.3f}): a new sensor placement, "
              "unit or reference frame? Compare with the modality report's 'without' column, "
              "or evaluate with --hide-drifting")
    hidden = drift.get("hidden_metrics")
    if hidden:
        print(f"\nwith {', '.join(drift['hidden'])} hidden from every row:")
        width = max(len(k) for k in hidden)
        for key, value in hidden.items():
            print(f"  {key.ljust(width)}  {value:.4f}")
