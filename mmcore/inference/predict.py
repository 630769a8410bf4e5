"""Using a trained run: ``mmcore.load(RUN_DIR)`` gives a
:class:`~mmcore.inference.predictor.Predictor` (re-exported here).

Loading reads only JSON and safetensors files (nothing is unpickled), checks that the plugins
the run was trained with are installed at a compatible major version, rebuilds the model
from ``spec.json``, restores each modality's fitted state and loads the best weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mmcore.errors import CheckpointError, PluginError, SpecError
from mmcore.inference.predictor import PREDICT_BATCH, Predictor
from mmcore.model import build_modalities, build_model
from mmcore.plugins.default import get_registry
from mmcore.plugins.registry import Registry
from mmcore.run.atomic import read_json
from mmcore.run.checkpoint import load_weights
from mmcore.run.layout import RunFolder, check_plugin_versions, load_run_spec
from mmcore.spec.load import parse_override
from mmcore.spec.model import NOT_SAVED, Spec
from mmcore.spec.trust import resolve_run_fusion_class
from mmcore.strategy import Strategy, resolve_device

#: stands in for the in-memory dataset a run was trained on (it is not saved with the run)
NO_DATASET = NOT_SAVED
#: the spec fields a trained run may be loaded with changed (``field=value``): how rows
#: are read, never what the model is
RUN_OVERRIDES = ("data.allow_missing", "data.bad_rows", "train.eval_batch_size")


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
            section, name = field.split(".", 1)
            setattr(getattr(spec, section), name, value)
        except ValidationError as exc:
            problems.append((field, f"{exc.errors()[0]['msg']} (got {value!r})"))
    if problems:
        raise SpecError("<command line>", problems)


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
    are read for evaluation and prediction (``"train.eval_batch_size=32"``, how many at a
    time); only :data:`RUN_OVERRIDES` fields are accepted
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


__all__ = ["NO_DATASET", "PREDICT_BATCH", "RUN_OVERRIDES", "Predictor", "apply_run_overrides",
           "check_run_overrides", "load"]
