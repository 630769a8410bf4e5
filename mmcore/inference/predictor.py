"""A trained run at work: :class:`Predictor`, which :func:`mmcore.load`
(:mod:`mmcore.inference.predict`) gives. It predicts raw rows in batches, and evaluates a split
or a data file with the reports that hide modalities (:mod:`mmcore.evaluate.ablation`), each
subset of modalities evaluated once per call.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, cast

import torch

from mmcore.batch import Batch
from mmcore.errors import CheckpointError, DataError
from mmcore.evaluate.ablation import SubsetEvaluations, modality_view, robustness_view
from mmcore.evaluate.masking import hide_all
from mmcore.evaluate.monitor import monitored_metric
from mmcore.evaluate.split import SplitResult, evaluate_kept, evaluate_model
from mmcore.head import Head
from mmcore.modality import Modality
from mmcore.model import MultimodalModel
from mmcore.plugins.registry import Registry
from mmcore.rows import for_rows, row_batches
from mmcore.run.atomic import atomic_write_json
from mmcore.run.layout import MODALITY_REPORT, ROBUSTNESS, RunFolder
from mmcore.spec.model import Spec
from mmcore.strategy import SingleProcess, Strategy

#: rows per forward pass in :meth:`Predictor.predict` when no batch size is given
PREDICT_BATCH = 256


class Predictor:
    """A trained model with its preprocessing, ready to predict and evaluate.

    Attributes:
        run_dir: the run folder.
        spec: the run's resolved spec (fitted head options, plugin versions).
        model: the model with the run's best weights, in eval mode on ``device``.
        modalities: the modalities with their fitted state.
        strategy: the processes evaluating together (one process unless :func:`mmcore.load` was
            given a strategy, as ``mmcore evaluate --nproc N`` does): each evaluates its
            shard of a split and every one gets the figures of the whole split.
    """

    def __init__(
        self,
        run_dir: Path,
        spec: Spec,
        model: MultimodalModel,
        modalities: dict[str, Modality],
        device: torch.device,
        registry: Registry,
        strategy: Strategy | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.strategy = strategy or SingleProcess()
        self.spec = spec
        self.model = model
        self.modalities = modalities
        self.device = device
        self.registry = registry
        self._data: Any = None
        self._data_ready = False
        #: the drift report of the last ``predict(..., hide_drifting=True)`` (mmcore.drift)
        self.last_drift: dict[str, Any] | None = None

    @property
    def _heads(self) -> Mapping[str, Head]:
        """The model's heads (an ``nn.ModuleDict``, which types them as modules)."""
        return cast("Mapping[str, Head]", self.model.heads)

    # -- data ---------------------------------------------------------------------------
    def _data_module(self, setup: bool) -> Any:
        from mmcore.data import DataModule

        if self._data is None:
            self._data = DataModule(
                self.spec, self.modalities, registry=self.registry, output_dir=None,
                progress=False,
            )
        if setup and not self._data_ready:
            if not _has_source(self.spec):
                raise CheckpointError(
                    f"{RunFolder(self.run_dir).spec_json}: the run was trained on an in-memory "
                    "dataset, so it has no data to evaluate; give a data file (--data PATH)"
                )
            # the main process preprocesses into the cache first; the others then read it
            self.strategy.on_main(lambda: self._data.setup(fit=False))
            if not self.strategy.is_main:
                self._data.setup(fit=False)
            self._data_ready = True
        return self._data

    def _split(self, split: str | None, data: str | Path | None) -> tuple[Any, str]:
        if split is not None and data is not None:
            raise ValueError("give a split or a data file, not both")
        if data is not None:
            dm = self._data_module(setup=False)
            path = Path(data)
            if not path.exists():
                raise DataError(f"{path}: data file not found")
            name = self.strategy.on_main(lambda: dm.external(path), share=True)
            if not self.strategy.is_main:
                name = dm.external(path)
            return dm, cast(str, name)  # every process has it
        dm = self._data_module(setup=True)
        if split is None:
            split = next((s for s in ("test", "validation") if s in dm.splits), None)
            if split is None:
                raise DataError(
                    f"the run's data has no test or validation split (splits: "
                    f"{', '.join(dm.splits)}); name one with split=... or give a data file"
                )
        if split not in dm.splits:
            raise DataError(
                f"no split {split!r} in the run's data (splits: {', '.join(dm.splits)})"
            )
        return dm, split

    def _evaluate(self, dm: Any, split: str, transform: Any = None) -> SplitResult:
        loader, weights = self._evaluation_loader(dm, split)
        return evaluate_model(self.model, loader, device=self.device, weights=weights,
                              precision="32", transform=transform, strategy=self.strategy,
                              batch_size=self.spec.train.batch_size, dedupe=not dm.streaming)

    def _evaluate_kept(self, dm: Any, split: str,
                       groups: list[frozenset[str]]) -> list[SplitResult]:
        loader, weights = self._evaluation_loader(dm, split)
        return evaluate_kept(self.model, loader, groups, device=self.device, weights=weights,
                             precision="32", strategy=self.strategy,
                             batch_size=self.spec.train.batch_size, dedupe=not dm.streaming)

    def _evaluation_loader(self, dm: Any, split: str) -> tuple[Any, dict[str, float]]:
        """This process's share of ``split`` in batches, and the heads' loss weights."""
        train, strategy = self.spec.train, self.strategy
        rows = strategy.local_batch_size(train.eval_batch(self.device.type))
        loader = dm.loader(split, batch_size=rows,
                           shuffle=False, num_workers=train.num_workers,
                           **strategy.shard_args())
        return loader, {name: head.weight for name, head in self.spec.heads.items()}

    # -- public -------------------------------------------------------------------------
    def predict(
        self,
        rows: Sequence[Mapping[str, Any]],
        batch_size: int = PREDICT_BATCH,
        root: str | Path | None = None,
        hide_drifting: bool = False,
    ) -> list[dict[str, Any]]:
        """One dict per row: head name -> that head's prediction (``Head.predict``: e.g.
        ``{"label": ..., "probability": ...}`` for classification, a number for regression).

        With ``hide_drifting`` the rows' input drift is measured first (all of ``rows``
        against the run's ``drift_reference.json``, :mod:`mmcore.drift`) and the modalities
        that drift are hidden from every row, as if the rows lacked them; the drift report is
        kept as :attr:`last_drift` (``None`` when the run has no reference: nothing hidden).

        Rows are raw records with the spec's modality columns (target columns are not
        needed). Relative file paths in them resolve against ``root`` (default: the training
        data's folder). A row whose value cannot be preprocessed raises :class:`DataError`
        naming the row (its position in ``rows``) and column.

        With a strategy of several processes (``mmcore predict --nproc N``) every process
        passes the same ``rows``, predicts its contiguous share of them and gets all the
        predictions, in order.
        """
        rows = list(rows)
        if not rows:
            return []
        # every process adapts to every row, as one call would; self.modalities keep their root
        modalities = for_rows(self.modalities, rows, root)
        batches_of = partial(row_batches, modalities, allow_missing=self.spec.data.allow_missing,
                             batch_size=batch_size)
        share = math.ceil(len(rows) / self.strategy.world_size)
        first = self.strategy.rank * share
        mine = rows[first:first + share]
        batches: Iterable[Batch] = batches_of(mine, first_row=first)
        hidden: frozenset[str] = frozenset()
        self.last_drift = None
        if hide_drifting:
            from mmcore.drift import drift_report, feature_statistics, read_reference

            reference = read_reference(self.run_dir)
            if reference is not None:  # the drift of every row, then this process's share
                every = list(batches_of(rows))
                current = feature_statistics(self.model, every, self.device)
                self.last_drift = drift_report(reference, current, "rows")
                hidden = frozenset(self.last_drift["drifting"])
                if len(mine) == len(rows):
                    batches = every  # this process's share is every row: preprocessed once
        predicted = self._predict(batches, hidden)
        return [p for part in self.strategy.gather(predicted) for p in part]

    def _predict(self, batches: Iterable[Batch], hidden: frozenset[str] = frozenset()
                 ) -> list[dict[str, Any]]:
        """Predictions for the rows of ``batches``, with the ``hidden`` modalities hidden
        from every row."""
        out: list[dict[str, Any]] = []
        self.model.eval()
        with torch.inference_mode():
            for batch in batches:
                inputs = {k: v.to(self.device) for k, v in batch.inputs.items()}
                if hidden:
                    inputs = hide_all(inputs, set(hidden))
                outputs = self.model(inputs)
                per_head = {name: head.predict(outputs[name])
                            for name, head in self._heads.items()}
                out += [{name: preds[i] for name, preds in per_head.items()}
                        for i in range(len(batch))]
        return out

    def evaluate(
        self, split: str | None = None, *, data: str | Path | None = None,
        report: bool = False, robustness: bool = False, save: bool = True,
    ) -> dict[str, Any]:
        """Metrics of the run's model on one split of its data (default: test, else
        validation) or on a data file with the training data's columns.

        Returns ``{"split", "rows", "metrics"}`` with metric names ``<head>.<metric>``,
        ``<head>.loss`` and ``loss``, plus ``"per_class"`` (head -> class -> precision,
        recall, F1 and support) for heads that have classes. With ``report`` it holds
        ``"modality_report"`` too (:meth:`modality_report`), with ``robustness``
        ``"robustness"`` (:meth:`robustness`), both from one evaluation of each subset of
        modalities, and each written to the run folder when ``save``.
        """
        evaluations, name = self._subsets(split, data)
        result = evaluations.full()
        out: dict[str, Any] = {"split": name, "rows": result.rows, "metrics": result.metrics}
        per_class = {
            head_name: classes for head_name, head in self._heads.items()
            if head_name in result.outputs and head_name in result.targets
            and (classes := head.per_class(result.outputs[head_name],
                                           result.targets[head_name]))
        }
        if per_class:
            out["per_class"] = per_class
        return {**out, **self._reports(evaluations, name, report, robustness, save)}

    def _require_targets(self, result: SplitResult, where: Any) -> None:
        if result.rows and not result.metrics:
            columns = ", ".join(repr(h.target) for h in self.spec.heads.values())
            raise DataError(
                f"{where}: no target column ({columns}) to evaluate against; "
                "use predict for rows without targets"
            )

    def robustness(
        self, split: str | None = None, *, data: str | Path | None = None, save: bool = True
    ) -> dict[str, Any]:
        """The monitored metric for every subset of modalities and each modality's exact
        Shapley value (see :mod:`mmcore.evaluate.ablation`); written to ``robustness.json``
        in the run folder when ``save``."""
        evaluations, name = self._subsets(split, data)
        return self._reports(evaluations, name, False, True, save)["robustness"]

    def _monitored(self) -> str:
        """The metric the reports show: the run's ``train.monitor`` (default: the first head's
        first metric)."""
        return monitored_metric(self.spec.train.monitor, self._heads, str(self.run_dir))[0]

    def modality_report(
        self, split: str | None = None, *, data: str | Path | None = None, save: bool = True
    ) -> dict[str, Any]:
        """Each modality's contribution (see :mod:`mmcore.evaluate.ablation`), on the
        monitored metric; written to ``modality_report.json`` in the run folder when
        ``save``."""
        evaluations, name = self._subsets(split, data)
        return self._reports(evaluations, name, True, False, save)["modality_report"]

    def _subsets(self, split: str | None,
                 data: str | Path | None) -> tuple[SubsetEvaluations, str]:
        """The split's evaluations by subset of modalities, the full set evaluated (an error
        when the rows have no targets), and the split's name."""
        dm, name = self._split(split, data)
        evaluations = SubsetEvaluations(lambda t: self._evaluate(dm, name, t),
                                        list(self.modalities),
                                        lambda groups: self._evaluate_kept(dm, name, groups))
        self._require_targets(evaluations.full(), data or name)
        return evaluations, name

    def _reports(self, evaluations: SubsetEvaluations, name: str, report: bool,
                 robustness: bool, save: bool) -> dict[str, Any]:
        """The modality report and the robustness report asked for, as views of
        ``evaluations``, each written to the run folder when ``save``."""
        out: dict[str, Any] = {}
        for key, wanted, view, file in (
            ("modality_report", report, modality_view, MODALITY_REPORT),
            ("robustness", robustness, robustness_view, ROBUSTNESS),
        ):
            if wanted:
                out[key] = done = view(evaluations, self._monitored(), name)
                if save:
                    self.strategy.on_main(partial(atomic_write_json, self.run_dir / file, done))
        return out


def _has_source(spec: Spec) -> bool:
    d = spec.data
    return any(v is not None for v in (d.path, d.train, d.validation, d.test))


__all__ = ["PREDICT_BATCH", "Predictor"]
