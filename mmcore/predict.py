"""Using a trained run: ``mmcore.load(RUN_DIR)`` gives a :class:`Predictor`.

Loading reads only JSON and safetensors files (nothing is unpickled), checks that the plugins
the run was trained with are installed at a compatible major version, rebuilds the model
from ``spec.json``, restores each modality's fitted state and loads the best weights.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from mmcore.batch import Batch
from mmcore.errors import CheckpointError, DataError, PluginError, SpecError
from mmcore.evaluate.ablation import SubsetEvaluations, modality_view, robustness_view
from mmcore.evaluate.masking import hide_all
from mmcore.evaluate.monitor import monitored_metric
from mmcore.evaluate.split import SplitResult, evaluate_model
from mmcore.modality import Modality, rooted
from mmcore.model import MultimodalModel, build_modalities, build_model
from mmcore.plugins.default import get_registry
from mmcore.plugins.registry import Registry
from mmcore.rows import adapt_to_given_rows
from mmcore.run.checkpoint import atomic_write_json, load_weights, read_json
from mmcore.run.layout import (
    MODALITY_REPORT,
    ROBUSTNESS,
    RunFolder,
    check_plugin_versions,
    load_run_spec,
)
from mmcore.spec.load import parse_override
from mmcore.spec.model import NOT_SAVED, Spec
from mmcore.spec.trust import resolve_run_fusion_class
from mmcore.strategy import SingleProcess, Strategy, resolve_device

#: stands in for the in-memory dataset a run was trained on (it is not saved with the run)
NO_DATASET = NOT_SAVED
#: rows per forward pass in :meth:`Predictor.predict` when no batch size is given
PREDICT_BATCH = 256
#: the spec fields a trained run may be loaded with changed (``field=value``): how rows
#: are read, never what the model is
RUN_OVERRIDES = ("data.allow_missing", "data.bad_rows")


class Predictor:
    """A trained model with its preprocessing, ready to predict and evaluate.

    Attributes:
        run_dir: the run folder.
        spec: the run's resolved spec (fitted head options, plugin versions).
        model: the model with the run's best weights, in eval mode on ``device``.
        modalities: the modalities with their fitted state.
        strategy: the processes evaluating together (one process unless :func:`load` was
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
            return dm, name
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
        train, strategy = self.spec.train, self.strategy
        loader = dm.loader(split, batch_size=strategy.local_batch_size(train.batch_size),
                           shuffle=False, num_workers=train.num_workers,
                           **strategy.shard_args())
        weights = {name: head.weight for name, head in self.spec.heads.items()}
        return evaluate_model(self.model, loader, device=self.device, weights=weights,
                              precision="32", transform=transform, strategy=strategy,
                              batch_size=train.batch_size, dedupe=not dm.streaming)

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
        with self._rooted(root):  # every process adapts to every row, as one call would
            adapt_to_given_rows(self.modalities, rows)
        share = math.ceil(len(rows) / self.strategy.world_size)
        first = self.strategy.rank * share
        mine = rows[first:first + share]
        batches: Iterable[Batch] = self._batches(mine, first, batch_size, root)
        hidden: frozenset[str] = frozenset()
        self.last_drift = None
        if hide_drifting:
            from mmcore.drift import drift_report, feature_statistics, read_reference

            reference = read_reference(self.run_dir)
            if reference is not None:  # the drift of every row, then this process's share
                every = list(self._batches(rows, 0, batch_size, root))
                current = feature_statistics(self.model, every, self.device)
                self.last_drift = drift_report(reference, current, "rows")
                hidden = frozenset(self.last_drift["drifting"])
                if len(mine) == len(rows):
                    batches = every  # this process's share is every row: preprocessed once
        predicted = self._predict(batches, hidden)
        return [p for part in self.strategy.gather(predicted) for p in part]

    def _batches(self, rows: list[Mapping[str, Any]], first: int, batch_size: int,
                 root: str | Path | None) -> Iterator[Batch]:
        """``rows`` collated in batches (relative paths under ``root``), numbered from
        ``first`` in error messages."""
        dm = self._data_module(setup=False)
        with self._rooted(root):
            for start in range(0, len(rows), batch_size):
                chunk = [dict(r) for r in rows[start:start + batch_size]]
                yield dm.batch_from_rows(chunk, first_row=first + start)

    def _rooted(self, root: str | Path | None) -> contextlib.AbstractContextManager[None]:
        """Relative file paths resolve against ``root`` for the duration (when given)."""
        return rooted(self.modalities, root)

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
                            for name, head in self.model.heads.items()}
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
            head_name: report for head_name, head in self.model.heads.items()
            if head_name in result.outputs and head_name in result.targets
            and (report := head.per_class(result.outputs[head_name], result.targets[head_name]))
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
        return monitored_metric(self.spec.train.monitor, self.model.heads, str(self.run_dir))[0]

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
                                        list(self.modalities))
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
                    self.strategy.on_main(
                        lambda done=done, file=file: atomic_write_json(self.run_dir / file, done))
        return out


def check_run_overrides(
    overrides: Iterable[str], allowed: Sequence[str] = RUN_OVERRIDES
) -> list[tuple[str, Any]]:
    """``["data.allow_missing=true"]`` -> ``[("data.allow_missing", True)]``; raises
    :class:`SpecError` (source ``<command line>``) for a field not in ``allowed``, listing
    the allowed ones: everything else was fixed when the run was trained."""
    parsed, problems = [], []
    for text in overrides:
        keys, value = parse_override(text)
        field = ".".join(keys)
        if field in allowed:
            parsed.append((field, value))
        else:
            problems.append((field, "cannot be changed after training; allowed here: "
                             + ", ".join(f"{f}=..." for f in allowed)))
    if problems:
        raise SpecError("<command line>", problems)
    return parsed


def apply_run_overrides(spec: Spec, overrides: Iterable[str]) -> None:
    """Set :data:`RUN_OVERRIDES` fields on a loaded run's spec (validated as the spec
    validates them); see :func:`check_run_overrides`."""
    problems = []
    for field, value in check_run_overrides(overrides):
        try:
            setattr(spec.data, field.split(".", 1)[1], value)
        except ValidationError as exc:
            problems.append((field, f"{exc.errors()[0]['msg']} (got {value!r})"))
    if problems:
        raise SpecError("<command line>", problems)


def _has_source(spec: Spec) -> bool:
    d = spec.data
    return any(v is not None for v in (d.path, d.train, d.validation, d.test))


def _read_spec_json(run: RunFolder) -> Spec:
    """The run's spec; a run trained on an in-memory dataset has no data source to record,
    which the spec model would reject, so a placeholder stands in for it."""
    if not run.spec_json.is_file():
        return load_run_spec(run)  # raises the "not a run folder" error
    raw = read_json(run.spec_json)
    data = raw.get("data") if isinstance(raw, dict) else None
    if isinstance(data, dict) and not any(data.get(k) for k in ("path", "train")):
        from mmcore.spec.load import spec_from_json

        return spec_from_json({**raw, "data": {**data, "dataset": NO_DATASET}}, run.path)
    return load_run_spec(run)


def load(
    run_dir: str | Path,
    *,
    device: str = "auto",
    registry: Registry | None = None,
    trust_code: bool = False,
    overrides: Iterable[str] = (),
    strategy: Strategy | None = None,
) -> Predictor:
    """Load a trained run folder.

    A run folder is data: loading it never runs code from it. A fusion given by import path
    must be a :class:`~mmcore.Fusion` subclass defined in one of mmcore's fusion modules or a
    module an installed plugin registers (see :mod:`mmcore.spec.trust`; checked before
    anything is imported, and whatever an import raises is a :class:`SpecError`); a
    file path (``"file.py:Class"``, such as the ``spec.py`` copied for a fusion defined in
    the spec file) is executed only with ``trust_code=True`` (only for runs you trust).

    Raises :class:`CheckpointError` when the folder is not a run, a file is corrupted, or
    the plugins the run needs are missing or at another major version (naming the package
    to install); :class:`SpecError` (field ``fusion.name``) when the fusion is refused.

    ``overrides`` (``"data.allow_missing=true"``, ``"data.bad_rows=skip"``) change how rows
    are read for evaluation and prediction; only :data:`RUN_OVERRIDES` fields are accepted
    (a :class:`SpecError` lists them). They are not written back to the run folder.

    ``strategy`` (e.g. :func:`mmcore.distributed.select_strategy` under torchrun) makes
    :meth:`Predictor.evaluate` and the reports run on every process of a run, each on its
    shard; ``load`` sets it up (joining the process group, on this process's device) and the
    caller closes it (``predictor.strategy.close()``).
    """
    run = RunFolder(Path(run_dir))
    registry = registry or get_registry()
    spec = _read_spec_json(run)
    apply_run_overrides(spec, overrides)
    check_plugin_versions(spec.plugins, run.spec_json, registry)
    fusion_class = None
    name = spec.fusion.name
    if isinstance(name, str) and ":" in name:  # checked before anything is imported or called
        fusion_class = resolve_run_fusion_class(
            name, run.path, trust_code=trust_code, source=str(run.spec_json), registry=registry
        )
    _check_run_options(spec, fusion_class, registry, str(run.spec_json))
    try:
        modalities = build_modalities(spec, registry)
        for name, modality in modalities.items():
            modality.load_state(run.modality_dir(name))
        model = build_model(spec, modalities, registry, fusion_class=fusion_class)
    except PluginError as exc:
        recorded = ", ".join(f"{d} {v}" for d, v in spec.plugins.items()) or "none recorded"
        raise CheckpointError(
            f"{run.spec_json}: cannot rebuild the model: {exc} (the run was trained with: "
            f"{recorded})"
        ) from None
    except (ValueError, TypeError, RuntimeError, MemoryError) as exc:  # e.g. absurd sizes
        raise CheckpointError(f"{run.spec_json}: cannot rebuild the model it describes: "
                              f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                              ) from None
    load_weights(model, run.model)
    target = resolve_device(device, str(run.spec_json))
    if strategy is not None:
        strategy.setup(spec, target)
        target = strategy.device
    model.to(target).eval()
    return Predictor(run.path, spec, model, modalities, target, registry, strategy)


def _check_run_options(
    spec: Spec, fusion_class: type | None, registry: Registry, source: str
) -> None:
    """Every option in a run's ``spec.json`` accepted by its plugin, fusion and heads, as
    ``mmcore validate`` checks them, before anything is built: a tampered file is a
    :class:`SpecError` naming the fields. The fusion is the class already resolved safely."""
    from mmcore.spec.load import check_plugins
    from mmcore.spec.model import FusionSpec

    checked = spec.model_copy()
    if fusion_class is not None:
        checked.fusion = FusionSpec(name=fusion_class, options=dict(spec.fusion.options))
    # callbacks are training's: loading a run neither checks nor imports them
    checked.train = spec.train.model_copy(update={"callbacks": []})
    # unregistered plugins are reported by the model build, with the versions trained with
    problems = [(field, why) for field, why in check_plugins(checked, registry)
                if not field.endswith((".plugin", ".kind", "fusion.name"))]
    if problems:
        raise SpecError(source, problems)
