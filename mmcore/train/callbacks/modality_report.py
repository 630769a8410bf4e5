"""The ``modality_report`` callback: after training, the best model evaluated with each
modality hidden and alone (``modality_report.json``, see :mod:`mmcore.evaluate.ablation`), and
the input statistics ``mmcore evaluate`` measures drift against (``drift_reference.json``), and
with two or more modalities the test split's drift against them (``trainer.test_drift``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmcore.evaluate.ablation import modality_report, report_groups
from mmcore.plugins.hookspecs import hookimpl
from mmcore.run import checkpoint as ck
from mmcore.run.layout import MODALITY_REPORT
from mmcore.train.settings import TEST, VALIDATION, resolve_monitor


class ModalityReport:
    """Sets ``trainer.modality_report`` from the test split (else validation) of
    ``trainer.final_results`` and writes it and the drift reference to the run folder.

    It runs before every other ``on_train_end`` (``tryfirst``), so the health checks, the
    card and the trackers see the report. Unlike a user's callback it runs on every process
    (the trainer registers it there too): each evaluation and each forward pass of a sharded
    model needs them all; the main process alone writes."""

    @hookimpl
    def on_train_start(self, trainer: Any) -> None:
        """Ask the final evaluation for the report's groups, so that they come from its pass
        over the test split (``trainer.final_groups``)."""
        trainer.final_groups.extend(report_groups(trainer.model.encoders))
        trainer.feature_statistics = True  # the drift statistics from the same passes

    @hookimpl(tryfirst=True)
    def on_train_end(self, trainer: Any, metrics: Mapping[str, float]) -> None:
        from mmcore.drift import (
            DRIFT_REFERENCE,
            drift_report,
            feature_statistics,
            measure_reference,
        )

        results, model, spec = trainer.final_results, trainer.model, trainer.spec
        write = trainer.strategy.on_main
        if results:
            split = TEST if TEST in results else VALIDATION
            metric = resolve_monitor(spec.train.monitor, model, True, spec.source)
            trainer.modality_report = report = modality_report(
                lambda t: results[split] if t is None else trainer.evaluate(split, t),
                list(model.encoders), metric.name, split,
                lambda groups: trainer.evaluate_kept(split, groups),
                trainer.final_subsets.get(split),
            )
            write(lambda: ck.atomic_write_json(trainer.run.path / MODALITY_REPORT, report))
        validation = results.get(VALIDATION)
        rows = spec.train.eval_batch(trainer.device.type)
        reference = measure_reference(model, trainer.data, rows, trainer.device,
                                      validation.features if validation else None)
        write(lambda: ck.atomic_write_json(trainer.run.path / DRIFT_REFERENCE, reference))
        if results and TEST in results and len(model.encoders) > 1:
            # the test split may be a later session: its drift, for the modality_drifts check
            test = results[TEST].features
            if test is None:
                loader = trainer.data.loader(TEST, batch_size=rows, shuffle=False)
                test = feature_statistics(model, loader, trainer.device)
            trainer.test_drift = drift_report(reference, test, TEST)
