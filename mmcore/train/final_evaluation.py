"""The end of a run: the best weights calibrated on validation (each classification head's
temperature, :mod:`mmcore.heads.calibration`), evaluated on validation and on test
(``train.final_test``), written to ``metrics.json``, with the confusion matrices the plots are
drawn from (``confusion.json``, see :mod:`mmcore.train.plots`)."""

from __future__ import annotations

from typing import Any

from mmcore.evaluate.split import SplitResult, rescore
from mmcore.heads.calibration import fit_temperature
from mmcore.run import checkpoint as ck
from mmcore.run.atomic import atomic_write_json
from mmcore.run.layout import save_spec
from mmcore.train.plots import CONFUSION, confusion_matrices
from mmcore.train.settings import TEST, VALIDATION


def final_evaluation(trainer: Any) -> tuple[dict[str, Any], dict[str, SplitResult]]:
    """What ``metrics.json`` holds (``best_epoch``, ``monitor``, ``best_value``, ``epochs``,
    ``stopped_early`` and the metrics of each evaluated split) and each split's result, the
    run's best weights loaded into ``trainer.model`` first. Every process calls it; the main
    one writes ``confusion.json`` (or removes an earlier run's), then ``metrics.json``."""
    model, run, strategy = trainer.model, trainer.run, trainer.strategy
    strategy.barrier()  # until the main process has written the best weights
    strategy.load_model_state(model, ck.load_tensors(run.model), run.model)
    calibrated = calibrate(trainer)
    final: dict[str, Any] = {
        "best_epoch": trainer.best_epoch,
        "monitor": trainer.monitor.name,
        "best_value": trainer.best_value,
        "epochs": trainer.epoch,
        "stopped_early": trainer.stopped_early,
    }
    results: dict[str, SplitResult] = {}
    data = trainer.data
    splits = (VALIDATION, TEST) if trainer.spec.train.final_test else (VALIDATION,)
    splits = tuple(s for s in splits if s in data.splits and data.num_rows(s) > 0)
    for split in splits:
        # the best epoch's validation pass (or the calibration's) gave these weights' outputs
        # over validation (a temperature does not change them): scored again, not run again
        known = (calibrated or trainer.best_validation) if split == VALIDATION else None
        if known is not None:
            results[split] = rescore(model, known, weights=trainer.weights,
                                     device=trainer.device,
                                     batch_size=trainer.spec.train.batch_size)
        elif split == splits[-1]:
            results[split] = evaluate_with_groups(trainer, split)
        else:
            results[split] = trainer.evaluate(split)
        final[split] = results[split].metrics

    def write() -> None:
        confusion = confusion_matrices(model, results)
        if confusion is None:
            (run.path / CONFUSION).unlink(missing_ok=True)
        else:
            atomic_write_json(run.path / CONFUSION, confusion)
        atomic_write_json(run.metrics_json, final)

    strategy.on_main(write)
    if data.bad_rows:  # the data module wrote them to the run folder
        trainer.note(f"{len(data.bad_rows)} bad row(s) left out: see {run.bad_rows}")
    return final, results


def evaluate_with_groups(trainer: Any, split: str) -> SplitResult:
    """``split`` (the last one evaluated) evaluated with every modality, and with only each of
    ``trainer.final_groups`` kept, in one pass of the encoders; the groups' results go to
    ``trainer.final_subsets[split]``."""
    if not trainer.final_groups:
        return trainer.evaluate(split)
    every = frozenset(trainer.model.encoders)
    groups = list(dict.fromkeys([every, *trainer.final_groups]))
    results = dict(zip(groups, trainer.evaluate_kept(split, groups), strict=True))
    trainer.final_subsets[split] = results
    return results[every]


def calibrate(trainer: Any) -> SplitResult | None:
    """Fit the temperature of every classification head with ``calibrate`` on the validation
    split, use it, and keep it in the run's ``spec.json`` (``fitted_temperature``), so that
    evaluate, predict and the export divide by it too; returns the validation pass it was
    fitted on (the best epoch's, when this session validated it). Nothing (``None``) without
    a validation split or such a head."""
    heads = {name: head for name, head in trainer.model.heads.items()
             if hasattr(head, "set_temperature") and head.options.calibrate}
    data = trainer.data
    if not heads or VALIDATION not in data.splits or data.num_rows(VALIDATION) == 0:
        return None
    for head in heads.values():
        head.set_temperature(1.0)  # fitted on the raw logits of these weights
    # the best epoch's own validation pass ran these weights over these rows: its outputs
    # (raw logits, whatever the temperature) are this pass's; a resumed run without it evaluates
    result = trainer.best_validation or trainer.evaluate(VALIDATION)
    fitted = {}
    for name, head in heads.items():
        fitted[name] = fit_temperature(result.outputs[name], result.targets[name])
        head.set_temperature(fitted[name])
    spec = trainer.resolved_spec
    for name, value in fitted.items():
        spec.heads[name].options["fitted_temperature"] = value
    trainer.strategy.on_main(lambda: save_spec(trainer.run, spec))
    return result


def flat_metrics(final: dict[str, Any]) -> dict[str, float]:
    """The evaluated splits' metrics of :func:`final_evaluation` as ``validation/...`` and
    ``test/...`` (what ``on_train_end`` gets)."""
    return {f"{split}/{k}": v
            for split in (VALIDATION, TEST) for k, v in final.get(split, {}).items()}
