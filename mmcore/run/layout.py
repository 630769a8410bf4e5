"""The run folder: where a training run's files live, its resolved spec, and the check that
the plugins it was trained with are installed at a compatible version.

Layout::

    run/
      spec.json                 the resolved spec (fitted head options, plugin versions)
      spec.py                   copy of the spec file, when it defined the fusion class
      model.safetensors         the best weights
      modalities/<name>/        each modality's fitted state
      metrics.jsonl             one line per epoch
      metrics.json              best epoch's validation and test metrics
      metrics.csv               from the "csv" callback
      best/                     model.safetensors + best.json of the best epoch
      checkpoints/epoch-NNNN/   the last checkpoints (see mmcore.run.checkpoint)
      checkpoints/epoch-NNNN-batch-BBBBBB/   a step checkpoint inside an epoch, if any
      checkpoints/latest        names the newest complete checkpoint
      bad_rows.json             rows left out with data.bad_rows="skip", if any
      modality_report.json      from training's end and ``mmcore evaluate``
      robustness.json           from ``mmcore evaluate --robustness``
      health.json               training health warnings (see mmcore.train.health), if any
      README.md                 the model card (mmcore.run.card), written at the end
      *.png                     plots, when matplotlib is installed
      .lock                     held by the training writing the folder (mmcore.run.lock)
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmcore.errors import CheckpointError
from mmcore.plugins.registry import Registry
from mmcore.plugins.versions import check_plugin_versions  # noqa: F401 - re-exported
from mmcore.run.atomic import atomic_write_json, read_json
from mmcore.run.checkpoint import BEST, CHECKPOINTS, MODEL_FILE, latest_checkpoint
from mmcore.run.files import (  # noqa: F401 - re-exported: the run folder's file names
    BAD_ROWS,
    CARD,
    CONFUSION,
    DRIFT_REFERENCE,
    EXPORTS,
    HEALTH,
    METRICS_JSON,
    METRICS_JSONL,
    MODALITIES,
    MODALITY_REPORT,
    ROBUSTNESS,
    SPEC_JSON,
)
from mmcore.spec.load import spec_from_json, spec_to_json
from mmcore.spec.model import Spec
from mmcore.spec.modules import SPEC_COPY, SPEC_MODULE_PREFIX
from mmcore.spec.roots import base_dir

#: everything a run writes, removed first when a run folder is overwritten
RUN_OUTPUTS = (
    SPEC_JSON, "spec.py", MODEL_FILE, CHECKPOINTS, BEST, MODALITIES, METRICS_JSONL,
    METRICS_JSON, "metrics.csv", BAD_ROWS, MODALITY_REPORT, DRIFT_REFERENCE, EXPORTS, HEALTH,
    CARD, CONFUSION, ROBUSTNESS, "tensorboard", "*.png",
)
#: DataSpec fields that hold paths; spec.json keeps them absolute, because a loaded run's
#: base folder is the run folder, not the spec file's folder.
DATA_PATH_FIELDS = ("path", "train", "validation", "test", "root", "cache_dir")


@dataclass(frozen=True)
class RunFolder:
    """Paths inside one run folder."""

    path: Path

    @property
    def spec_json(self) -> Path:
        return self.path / SPEC_JSON

    @property
    def model(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def best(self) -> Path:
        return self.path / BEST

    @property
    def metrics_jsonl(self) -> Path:
        return self.path / METRICS_JSONL

    @property
    def metrics_json(self) -> Path:
        return self.path / METRICS_JSON

    @property
    def bad_rows(self) -> Path:
        return self.path / BAD_ROWS

    def modality_dir(self, name: str) -> Path:
        return self.path / MODALITIES / name


def default_run_dir(spec: Spec, output: str | Path | None = None) -> Path:
    """``output``, else ``spec.output``, else ``runs/<spec.name>``; relative to the cwd."""
    return Path(output or spec.output or Path("runs") / spec.name)


def plugin_versions(spec: Spec, registry: Registry) -> dict[str, str]:
    """``{distribution: version}`` of every plugin providing a modality, the fusion (when it
    is registered by name) or a head of ``spec``."""
    used: list[tuple[str, str]] = [("modality", m.plugin_name) for m in spec.modalities.values()]
    if isinstance(spec.fusion.name, str) and ":" not in spec.fusion.name:
        used.append(("fusion", spec.fusion.name))
    used += [("head", h.kind) for h in spec.heads.values()]
    out: dict[str, str] = {}
    for kind, name in used:
        reg = registry.get(kind, name)  # type: ignore[arg-type]
        if reg.distribution:
            out[reg.distribution] = reg.version or "unknown"
    return dict(sorted(out.items()))


def spec_json_data(spec: Spec) -> dict[str, Any]:
    """The resolved spec as saved in ``spec.json``: data paths made absolute."""
    data = spec_to_json(spec)
    base = base_dir(spec)
    for key in DATA_PATH_FIELDS:
        value = data["data"].get(key)
        if value and not Path(value).is_absolute():
            data["data"][key] = str((base / value).resolve())
    return data


def save_spec(run: RunFolder, spec: Spec) -> None:
    """Write ``spec.json``; copy the spec file as ``spec.py`` when it defined the fusion."""
    fusion = spec.fusion.name
    if isinstance(fusion, type) and fusion.__module__.startswith(SPEC_MODULE_PREFIX):
        source = getattr(sys.modules.get(fusion.__module__), "__file__", None)
        if source is None:
            raise CheckpointError(
                f"cannot save the spec: the module defining fusion {fusion.__qualname__} "
                "has no file to copy"
            )
        shutil.copyfile(source, run.path / SPEC_COPY)
    atomic_write_json(run.spec_json, spec_json_data(spec))


def load_run_spec(run: RunFolder) -> Spec:
    """The resolved spec of a run (base folder: the run folder)."""
    if not run.spec_json.is_file():
        raise CheckpointError(
            f"{run.path} is not a run folder: {run.spec_json.name} is missing "
            "(train one with `mmcore train SPEC`)"
        )
    return spec_from_json(read_json(run.spec_json), base_dir=run.path)


def reset_outputs(run: RunFolder, patterns: Iterable[str]) -> None:
    """Remove the files and folders of an earlier run in the same folder (``overwrite``);
    ``patterns`` are names or globs relative to the run folder."""
    from mmcore.run.card import is_card

    for pattern in patterns:
        for target in run.path.glob(pattern):
            if target.name == CARD and not is_card(target):
                continue  # a README.md of the user's, not a model card mmcore wrote
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:  # a file, or a symbolic link (removed itself, never what it points to)
                target.unlink()


def resume_mismatches(spec: Spec, saved: Spec) -> list[str]:
    """Where ``spec`` differs from a run's saved spec outside ``train`` (and the heads'
    fitted options, which the new spec may leave out, and ``data.license``, which only the
    model card reads), and in ``train.ensemble``, which is the model's shape (its number of
    members), not a training setting."""
    new, old = spec_json_data(spec), spec_json_data(saved)
    shape = []
    if spec.train.ensemble != saved.train.ensemble:
        shape.append(f"train.ensemble: {saved.train.ensemble} in the run, "
                     f"{spec.train.ensemble} now")
    for data in (new["data"], old["data"]):
        data.pop("license", None)
    problems = [key for key in ("data", "modalities", "fusion") if new[key] != old[key]]
    if set(new["heads"]) != set(old["heads"]):
        problems.append("heads")
    else:
        for name, head in new["heads"].items():
            before = old["heads"][name]
            if any(head[k] != before[k] for k in ("kind", "target", "weight")) or any(
                before["options"].get(k) != v for k, v in head["options"].items()
            ):
                problems.append(f"heads.{name}")
    return problems + shape


def prepare_run_folder(run: RunFolder, *, resume: bool, overwrite: bool,
                       note: Callable[[str], None]) -> Path | None:
    """Make ``run`` ready for a training: returns the checkpoint to resume from (``resume``
    and one is complete), else clears an earlier run's files (``overwrite``, or a run that
    stopped before its first complete checkpoint) and returns ``None``. A finished run is
    kept unless ``overwrite``: :class:`CheckpointError` says how to continue or replace it."""
    if resume:
        found = latest_checkpoint(run.checkpoints)
        if found is not None:
            return found
        note(f"no complete checkpoint in {run.checkpoints}: starting from scratch")
        reset_outputs(run, RUN_OUTPUTS)
    markers = (SPEC_JSON, CHECKPOINTS, MODEL_FILE)
    existing = [n for n in markers if (run.path / n).exists()]
    finished = run.model.exists() or latest_checkpoint(run.checkpoints) is not None
    if existing and finished and not overwrite:
        raise CheckpointError(
            f"{run.path} already holds a run with a complete checkpoint "
            f"({', '.join(existing)}); continue it with --resume, replace it with "
            "--overwrite, or choose another --output"
        )
    if existing and not finished and not overwrite:
        note(f"{run.path} holds a run that stopped before its first complete "
             "checkpoint: starting it again in the same folder")
    if existing:
        reset_outputs(run, RUN_OUTPUTS)
    run.path.mkdir(parents=True, exist_ok=True)
    return None
