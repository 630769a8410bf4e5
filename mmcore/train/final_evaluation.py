"""The end of a run: the best weights evaluated on validation and on test
(``train.final_test``), written to ``metrics.json``, with the confusion matrices the plots are
drawn from (``confusion.json``, see :mod:`mmcore.train.plots`)."""

from __future__ import annotations

from typing import Any

from mmcore.evaluate.split import SplitResult
from mmcore.run import checkpoint as ck
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
        if split in data.splits and data.num_rows(split) > 0:
            results[split] = trainer.evaluate(split)
            final[split] = results[split].metrics

    def write() -> None:
        confusion = confusion_matrices(model, results)
        if confusion is None:
            (run.path / CONFUSION).unlink(missing_ok=True)
        else:
            ck.atomic_write_json(run.path / CONFUSION, confusion)
        ck.atomic_write_json(run.metrics_json, final)

    strategy.on_main(write)
    if data.bad_rows:  # the data module wrote them to the run folder
        trainer.note(f"{len(data.bad_rows)} bad row(s) left out: see {run.bad_rows}")
    return final, results


def flat_metrics(final: dict[str, Any]) -> dict[str, float]:
    """The evaluated splits' metrics of :func:`final_evaluation` as ``validation/...`` and
    ``test/...`` (what ``on_train_end`` gets)."""
    return {f"{split}/{k}": v
            for split in (VALIDATION, TEST) for k, v in final.get(split, {}).items()}
