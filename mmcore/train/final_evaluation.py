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
    for split in splits:
        if split == VALIDATION and calibrated is not None:
            # the calibration's pass gave the outputs (a temperature does not change them):
            # scored again with the fitted temperatures, not run again
            results[split] = rescore(model, calibrated, weights=trainer.weights,
                                     device=trainer.device,
                                     batch_size=trainer.spec.train.batch_size)
        elif split in data.splits and data.num_rows(split) > 0:
            results[split] = trainer.evaluate(split)
        else:
            continue
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


def calibrate(trainer: Any) -> SplitResult | None:
    """Fit the temperature of every classification head with ``calibrate`` on the validation
    split, use it, and keep it in the run's ``spec.json`` (``fitted_temperature``), so that
    evaluate, predict and the export divide by it too; returns the validation pass it was
    fitted on. Nothing (``None``) without a validation split or such a head."""
    heads = {name: head for name, head in trainer.model.heads.items()
             if hasattr(head, "set_temperature") and head.options.calibrate}
    data = trainer.data
    if not heads or VALIDATION not in data.splits or data.num_rows(VALIDATION) == 0:
        return None
    for head in heads.values():
        head.set_temperature(1.0)  # fitted on the raw logits of these weights
    result = trainer.evaluate(VALIDATION)
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
