"""Input drift per modality: how far a split's encoder features are from the training split's.

A model trained in one session meets data from another: a sensor remounted, a quaternion in
another reference frame, a new microphone. Each modality's encoder already maps its raw input
to features, so the shift is measured there, the same way for every modality: the mean of each
pooled feature over a split's rows (those that have the modality), in units of that feature's
standard deviation on the training split, averaged over the features. 0 is no shift; sampling
noise alone gives about ``1 / sqrt(rows)``; the training split's own validation rows give the
level a run can expect without a shift (``reference["validation"]``).

The training statistics (over up to :data:`REFERENCE_ROWS` training rows) are written at the
end of training (``drift_reference.json`` in the run folder: data, never code).
:func:`drift_report` compares a split with them;
``mmcore evaluate`` prints it and warns about a drifting modality, and ``--hide-drifting``
evaluates with those modalities hidden, as if the rows lacked them (useful when the model was
trained to work without them, e.g. with ``train.modality_dropout``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from mmcore.batch import Batch
from mmcore.evaluate.features import FeatureStatistics
from mmcore.run.layout import DRIFT_REFERENCE

__all__ = ["DRIFT_REFERENCE", "drift_report", "evaluate_drift", "feature_statistics",
           "format_drift", "make_reference", "measure_reference", "read_reference"]

#: the training rows the reference statistics are measured on (a seeded random sample when the
#: split has more): each feature mean's standard error is then under 0.07 training standard
#: deviations, so the reference adds about 0.05 to a split's score (``0.8 / sqrt(256)``,
#: averaged over the features), a tenth of :data:`MIN_THRESHOLD`; and a large training split
#: costs no more than a small one (one pass of the encoders over these rows at the end of
#: training: 1,024 rows cost 3% of a 2-epoch run of a compute-bound model); a power of two
REFERENCE_ROWS = 256
REFERENCE_SEED = 0
#: a modality drifts when its score passes this...
MIN_THRESHOLD = 0.5
#: ...or this many times the validation split's score, whichever is larger
VALIDATION_FACTOR = 3.0
#: the smallest standard deviation a feature is measured in (constant features)
STD_FLOOR = 1e-3
#: ...and never below this over the square root of the split's rows: sampling noise alone
#: gives a score of about ``0.8 / sqrt(rows)`` (the mean of ``|N(0, 1/rows)|``), so a split of
#: a few rows is not called drifting for its noise
NOISE_FACTOR = 2.5


def feature_statistics(model: Any, batches: Iterable[Batch], device: torch.device,
                       transform: Any = None) -> dict[str, dict[str, Any]]:
    """Per modality: ``{"rows", "mean", "std"}`` of its encoder's pooled features over the rows
    that have it (``mean``/``std`` are lists of floats; absent for a modality no row has),
    from a pass of the encoders over ``batches``. ``transform`` changes each batch's inputs
    first (as the evaluation's does). (An evaluation measures the same in its own pass:
    ``evaluate_model(..., statistics=True)``.)"""
    statistics = FeatureStatistics(model.encoders)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in batches:
                inputs = {k: v.to(device) for k, v in batch.inputs.items()}
                if transform is not None:
                    inputs = transform(inputs)
                for name, encoder in model.encoders.items():
                    if name in inputs:
                        statistics.add(name, encoder(inputs[name]))
    finally:
        model.train(was_training)
    return statistics.result()


def drift_scores(reference: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, float]:
    """Per modality in both: the mean over features of ``|mean - mean_train| / std_train``
    (``nan`` where either side has no rows or the sizes differ)."""
    scores = {}
    for name, ref in reference.items():
        cur = current.get(name)
        if not cur or not ref.get("rows") or not cur.get("rows"):
            scores[name] = math.nan
            continue
        m0, s0, m1 = ref["mean"], ref["std"], cur["mean"]
        if not (len(m0) == len(s0) == len(m1)) or not m0:
            scores[name] = math.nan
            continue
        scores[name] = sum(abs(b - a) / max(s, STD_FLOOR)
                           for a, s, b in zip(m0, s0, m1, strict=True)) / len(m0)
    return scores


def thresholds(reference: Mapping[str, Any]) -> dict[str, float]:
    """Per modality: the score above which it drifts (:data:`MIN_THRESHOLD`, or
    :data:`VALIDATION_FACTOR` times the validation split's score when that is larger;
    :func:`drift_report` also raises it to the evaluated split's noise level)."""
    validation = reference.get("validation") or {}
    out = {}
    for name in reference.get("train", {}):
        level = validation.get(name)
        scaled = VALIDATION_FACTOR * level if isinstance(level, float) and math.isfinite(level) \
            else 0.0
        out[name] = max(MIN_THRESHOLD, scaled)
    return out


def make_reference(train: Mapping[str, Any],
                   validation: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What ``drift_reference.json`` holds: the training statistics and, when a validation
    split was measured, its scores against them (the no-shift level)."""
    ref: dict[str, Any] = {"train": dict(train)}
    if validation is not None:
        ref["validation"] = drift_scores(train, validation)
    return ref


def measure_reference(model: Any, data: Any, batch_size: int, device: torch.device,
                      validation: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What ``drift_reference.json`` holds for ``model``: its encoders' statistics over the
    training split of ``data`` (a set-up :class:`~mmcore.data.DataModule`; a seeded random
    sample of :data:`REFERENCE_ROWS` rows when it has more) and the validation split's scores
    against them, when it has rows (``validation``: its statistics, when an evaluation of
    ``model`` measured them already). Every process of a sharded (FSDP) model must call it, as
    each forward pass gathers the shards (each draws the same sample)."""
    # a power of two up to batch_size divides REFERENCE_ROWS (one too): the sample is the same
    # rows, exactly REFERENCE_ROWS of them, whatever the batch size (a streamed split that
    # leaves bad rows out has shorter batches: a few rows more)
    sample_batch = 1 << (min(batch_size, REFERENCE_ROWS).bit_length() - 1)
    train = data.loader("train", batch_size=sample_batch, shuffle=True, seed=REFERENCE_SEED)
    reference = feature_statistics(model, _first_rows(train, REFERENCE_ROWS), device)
    if validation is None and "validation" in data.splits and data.num_rows("validation") > 0:
        loader = data.loader("validation", batch_size=batch_size, shuffle=False)
        validation = feature_statistics(model, loader, device)
    return make_reference(reference, validation)


def _first_rows(batches: Iterable[Batch], rows: int) -> Iterator[Batch]:
    """``batches`` up to the one that brings the count to ``rows`` (a whole batch more at
    most)."""
    seen = 0
    for batch in batches:
        if seen >= rows:
            return
        seen += len(batch)
        yield batch


def check_reference(data: Any, where: str) -> dict[str, Any]:
    """``drift_reference.json`` read as data: ``ValueError`` naming ``where`` when malformed."""
    def numbers(value: Any) -> bool:
        return isinstance(value, list) and all(isinstance(v, int | float) for v in value)

    if not isinstance(data, dict) or not isinstance(data.get("train"), dict):
        raise ValueError(f"{where}: expected an object with a 'train' object")
    for name, stats in data["train"].items():
        if not isinstance(stats, dict) or not isinstance(stats.get("rows"), int):
            raise ValueError(f"{where}: train.{name} needs an integer 'rows'")
        if stats["rows"] and not (numbers(stats.get("mean")) and numbers(stats.get("std"))):
            raise ValueError(f"{where}: train.{name} needs 'mean' and 'std' lists of numbers")
    validation = data.get("validation", {})
    if not isinstance(validation, dict) or not all(
            isinstance(v, int | float) for v in validation.values()):
        raise ValueError(f"{where}: 'validation' must map modalities to numbers")
    return {"train": data["train"], "validation": {k: float(v) for k, v in validation.items()}}


def drift_report(reference: Mapping[str, Any], current: Mapping[str, Any],
                 split: str) -> dict[str, Any]:
    """``{"split", "modalities": {name: {"score", "threshold", "validation", "drifting"}},
    "drifting": [names]}`` for ``current`` statistics against ``reference``."""
    scores = drift_scores(reference["train"], current)
    limits = thresholds(reference)
    for name, stats in current.items():
        rows = stats.get("rows") or 0
        if name in limits and rows:
            limits[name] = max(limits[name], NOISE_FACTOR / math.sqrt(rows))
    validation = reference.get("validation", {})
    per = {
        name: {"score": score, "threshold": limits.get(name, MIN_THRESHOLD),
               "validation": validation.get(name, math.nan),
               "drifting": bool(math.isfinite(score) and score > limits.get(name, MIN_THRESHOLD))}
        for name, score in scores.items()
    }
    return {"split": split, "modalities": per,
            "drifting": sorted(n for n, e in per.items() if e["drifting"])}


def format_drift(report: Mapping[str, Any]) -> str:
    """A plain-text table: each modality's drift score, its threshold, the validation level."""
    def cell(v: float) -> str:
        return "-" if not math.isfinite(v) else f"{v:.3f}"

    rows = [["modality", "drift", "threshold", "validation", ""]]
    for name, e in report["modalities"].items():
        rows.append([name, cell(e["score"]), cell(e["threshold"]), cell(e["validation"]),
                     "DRIFTING" if e["drifting"] else ""])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    return (f"input drift on {report['split']} (mean feature shift in training standard "
            "deviations):\n" + "\n".join("  " + line for line in lines))


def read_reference(run_dir: Path) -> dict[str, Any] | None:
    """A run folder's ``drift_reference.json``, checked as data; ``None`` when it has none
    (trained without the report, or by an older mmcore). :class:`CheckpointError` names a
    malformed file."""
    import json

    from mmcore.errors import CheckpointError

    path = Path(run_dir) / DRIFT_REFERENCE
    if not path.is_file():
        return None
    try:
        return check_reference(json.loads(path.read_text(encoding="utf-8")), str(path))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None


def evaluate_drift(predictor: Any, split: str | None = None, *, data: Any = None,
                   hide: bool = False) -> dict[str, Any] | None:
    """The drift report of a loaded run (:func:`mmcore.load`) on one split of its data or a
    data file, against the run's ``drift_reference.json``; ``None`` when the run has none.
    With ``hide``, the report also holds ``"hidden_metrics"``: the split's metrics with the
    drifting modalities hidden from every row (``None`` when none drifts)."""
    from mmcore.evaluate.masking import hide_all

    reference = read_reference(predictor.run_dir)
    if reference is None:
        return None
    dm, name = predictor._split(split, data)
    loader = dm.loader(name, batch_size=predictor.spec.train.eval_batch(predictor.device.type),
                       shuffle=False)
    current = feature_statistics(predictor.model, loader, predictor.device)
    report = drift_report(reference, current, name)
    if hide:
        drifting = set(report["drifting"])
        report["hidden"] = sorted(drifting)
        report["hidden_metrics"] = predictor._evaluate(
            dm, name, lambda inputs: hide_all(inputs, drifting)).metrics if drifting else None
    return report
