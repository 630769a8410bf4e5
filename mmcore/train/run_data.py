"""The data a run trains on: the modalities fitted on the training split and their state
saved to the run folder (a new run), or their state loaded from it (a resume, or ranks other
than 0 once rank 0 has fitted them); and the spec resolved with what the data fixed (the
heads' fitted options, the plugins' versions)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mmcore.errors import CheckpointError, DataError
from mmcore.plugins.registry import Registry
from mmcore.run.layout import (
    SPEC_JSON,
    RunFolder,
    check_plugin_versions,
    load_run_spec,
    plugin_versions,
    resume_mismatches,
)
from mmcore.spec.model import Spec
from mmcore.train.settings import TRAIN

if TYPE_CHECKING:
    from mmcore.data import DataModule


def set_up_data(spec: Spec, modalities: dict[str, Any], run: RunFolder, registry: Registry, *,
                from_run: bool, writer: bool, progress: bool) -> tuple[DataModule, Spec]:
    """The set-up data module of ``spec`` and the spec whose heads carry fitted options.

    With ``from_run`` the modalities' state and the heads' fitted options come from ``run``
    (:class:`CheckpointError` if its ``spec.json`` differs beyond ``train.*``); otherwise the
    modalities are fitted and their state saved there. ``writer``: this process writes the
    run folder (the data module's files) and announces; ``progress``: show its bars.
    """
    from mmcore.data import DataModule, fit_cache

    if from_run:
        spec = _with_saved_heads(spec, run, registry)
        for name, modality in modalities.items():
            modality.load_state(run.modality_dir(name))
    dm = DataModule(spec, modalities, registry=registry,
                    output_dir=run.path if writer else None, progress=progress,
                    announce=writer)
    dm.setup(fit=not from_run)
    if TRAIN not in dm.splits or dm.num_rows(TRAIN) == 0:
        raise DataError(f"{spec.source}: the data has no training rows (splits: "
                        f"{', '.join(dm.splits) or 'none'})")
    if not from_run:
        for name, modality in modalities.items():
            folder = run.modality_dir(name)
            folder.mkdir(parents=True, exist_ok=True)
            cached = dm.fitted_states.get(name)  # the same files, not encoded again
            if cached is None or not fit_cache.copy_state(cached, folder):
                modality.save_state(folder)
    heads = {
        n: h.model_copy(update={"options": dict(dm.head_options.get(n, h.options))})
        for n, h in spec.heads.items()
    }
    return dm, spec.model_copy(
        update={"heads": heads, "plugins": plugin_versions(spec, registry)}
    )


def _with_saved_heads(spec: Spec, run: RunFolder, registry: Registry) -> Spec:
    """``spec`` with the heads' fitted options of the run's ``spec.json``, once its plugins'
    versions and everything but ``train.*`` agree."""
    saved = load_run_spec(run)
    check_plugin_versions(saved.plugins, run.spec_json, registry)
    problems = resume_mismatches(spec, saved)
    if problems:
        raise CheckpointError(
            f"cannot resume {run.path}: the spec differs from its "
            f"{SPEC_JSON} ({'; '.join(problems)}); only train.* settings may change, "
            "train.ensemble (the model's number of members) excepted"
        )
    heads = {
        n: h.model_copy(update={"options": dict(saved.heads[n].options)})
        for n, h in spec.heads.items()
    }
    return spec.model_copy(update={"heads": heads})
