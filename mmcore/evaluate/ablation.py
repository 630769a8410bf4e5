"""Modality ablations: a trained model evaluated with modalities hidden from every row
(``present=False``, as if the data lacked them; :mod:`mmcore.evaluate.masking`), seen two
ways.

The modality report: for every modality the split is evaluated twice more, with that modality
hidden and with it alone kept. A large drop "without" means the model relies on the modality;
a good score "only" means it carries the task on its own.

The robustness report: the metric for every subset of modalities, and each modality's exact
Shapley value. A subset ``S`` is evaluated by hiding every other modality from every row. With
``M`` modalities that is ``2^M`` evaluations of the split, ``32`` for five. The value of a subset
is the monitored metric; the empty subset is the model with no input at all (its heads see the
fusion of nothing), the chance-like floor. A modality's Shapley value is its marginal
contribution averaged over every order in which modalities could be added::

    phi_m = sum over S not containing m of |S|! (M - |S| - 1)! / M! * (v(S + m) - v(S))

The values add up to ``v(all) - v(none)`` (efficiency), so they split the model's score above the
floor among its modalities, interactions shared fairly. For a metric where lower is better
(``ece``, ``mae``) a helpful modality has a negative value.

Drop curves: for each modality, the metric when it is hidden from a seeded random 25%, 50% and
75% of the rows (0% and 100% are the full model and the "without" subset).

Both reports are views of one :class:`SubsetEvaluations`: the split evaluated with each subset
of modalities kept, each subset at most once, so asking for both (``mmcore evaluate
--robustness``) evaluates the "without" and "only" subsets once, not twice; and, given an
``evaluate_kept``, all the subsets a view needs in one pass of the encoders (the fusion and the
heads once per subset). It wraps
``evaluate``, which evaluates the split with an optional input transform (``None``: the
inputs as they are), so training and a loaded run each evaluate their own way; metrics use the
names of :mod:`mmcore.evaluate.split`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch

from mmcore.batch import ModalityBatch
from mmcore.evaluate.masking import hide, hide_all
from mmcore.evaluate.split import SplitResult, Transform

#: more modalities than this would need over a thousand evaluations
MAX_MODALITIES = 10
#: the share of rows a modality is hidden from, between none (0) and all (1), in drop curves
DROP_RATES = (0.25, 0.5, 0.75)
DROP_SEED = 0


def hiding(names: set[str]) -> Transform | None:
    """The transform that hides the modalities ``names`` from every row (``None`` for none)."""
    return (lambda inputs: hide_all(inputs, names)) if names else None


class SubsetEvaluations:
    """The split evaluated with a subset of ``modalities`` kept and the others hidden from every
    row, each subset at most once (kept for the reports that read it): what the modality report
    and the robustness report are views of.

    ``evaluate`` evaluates the split under an input transform (``None``: as it is); the full set
    of modalities is ``evaluate(None)``.
    """

    def __init__(self, evaluate: Callable[[Transform | None], SplitResult],
                 modalities: Sequence[str],
                 evaluate_kept: Callable[[list[frozenset[str]]], list[SplitResult]] | None = None,
                 known: Mapping[frozenset[str], SplitResult] | None = None,
                 ) -> None:
        self.evaluate = evaluate
        #: evaluates several groups of kept modalities in one pass of the encoders
        #: (:func:`mmcore.evaluate.split.evaluate_kept`); without it, one evaluation each
        self.evaluate_kept = evaluate_kept
        self.names = sorted(modalities)
        #: ``known``: results already evaluated, by group (e.g. the trainer's final pass)
        self._results: dict[frozenset[str], SplitResult] = dict(known or {})

    def kept(self, group: Iterable[str]) -> SplitResult:
        """The result with the modalities ``group`` kept (evaluated on the first ask)."""
        key = frozenset(group)
        if key not in self._results:
            self._results[key] = self.evaluate(hiding(set(self.names) - key))
        return self._results[key]

    def prefetch(self, groups: Iterable[Iterable[str]]) -> None:
        """Evaluate the ``groups`` not evaluated yet together, in one pass of the encoders
        when ``evaluate_kept`` is given (the views ask for theirs first)."""
        todo = list(dict.fromkeys(frozenset(g) for g in groups if frozenset(g) not in
                                  self._results))
        if self.evaluate_kept is None or len(todo) < 2:
            return
        for key, result in zip(todo, self.evaluate_kept(todo), strict=True):
            self._results[key] = result

    def full(self) -> SplitResult:
        """The result with every modality kept: the model as trained."""
        return self.kept(self.names)


# -- the modality report -----------------------------------------------------------------------
def modality_report(
    evaluate: Callable[[Transform | None], SplitResult],
    modalities: Sequence[str],
    monitor: str,
    split: str,
    evaluate_kept: Callable[[list[frozenset[str]]], list[SplitResult]] | None = None,
    known: Mapping[frozenset[str], SplitResult] | None = None,
) -> dict[str, Any]:
    """:func:`modality_view` of ``modalities``' subsets, each evaluated once (``known``: those
    evaluated already): all of them, each one hidden and each one alone (with two modalities
    "a hidden" is "b alone")."""
    return modality_view(SubsetEvaluations(evaluate, modalities, evaluate_kept, known),
                         monitor, split)


def report_groups(modalities: Iterable[str]) -> list[frozenset[str]]:
    """The groups of kept modalities the modality report reads besides all of them: all but
    each one ("without"), and each one alone ("only")."""
    names = sorted(modalities)
    every = set(names)
    return list(dict.fromkeys([*(frozenset(every - {n}) for n in names),
                               *(frozenset({n}) for n in names)]))


def modality_view(evaluations: SubsetEvaluations, monitor: str, split: str) -> dict[str, Any]:
    """Each modality hidden ("without") and alone ("only"), beside all of them.

    Returns ``{"split", "monitor", "baseline": metrics, "modalities": {name: {"without":
    metrics, "only": metrics}}}``.
    """
    names = evaluations.names
    baseline = evaluations.full().metrics
    evaluations.prefetch(report_groups(names))
    per: dict[str, Any] = {}
    for name in names:
        without = evaluations.kept(set(names) - {name}).metrics
        only = evaluations.kept({name}).metrics
        per[name] = {"without": without, "only": only}
    return {"split": split, "monitor": monitor, "baseline": baseline, "modalities": per}


def _cell(value: Any) -> str:
    if not isinstance(value, int | float) or math.isnan(value):
        return "-"
    return f"{value:.4f}"


def format_report(report: Mapping[str, Any]) -> str:
    """A plain-text table of the monitored metric: all modalities, each one hidden (with
    the change from all), and each one alone."""
    monitor = report["monitor"]
    base = report["baseline"].get(monitor, float("nan"))
    header = ["modality", f"without ({monitor})", "change", f"only ({monitor})"]
    rows = [["(all)", _cell(base), "", _cell(base)]]
    for name, entry in report["modalities"].items():
        without = entry["without"].get(monitor, float("nan"))
        change = without - base
        rows.append([name, _cell(without), f"{change:+.4f}" if math.isfinite(change) else "-",
                     _cell(entry["only"].get(monitor, float("nan")))])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    table = [header, ["-" * w for w in widths], *rows]
    lines = [f"modality report ({report['split']} split)"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]
    return "\n".join(lines)


# -- the robustness report ---------------------------------------------------------------------
def subsets(names: Sequence[str]) -> list[tuple[str, ...]]:
    """Every subset of ``names`` (sorted), smallest first."""
    names = sorted(names)
    return [c for k in range(len(names) + 1) for c in itertools.combinations(names, k)]


def shapley_values(value: Mapping[frozenset[str], float], names: Sequence[str]) -> dict[str, float]:
    """Exact Shapley values of the game ``value`` (every subset of ``names`` -> a number)."""
    m = len(names)
    out = {}
    for name in sorted(names):
        total = 0.0
        others = [n for n in names if n != name]
        for k in range(m):
            weight = math.factorial(k) * math.factorial(m - k - 1) / math.factorial(m)
            for group in itertools.combinations(others, k):
                s = frozenset(group)
                total += weight * (value[s | {name}] - value[s])
        out[name] = total
    return out


def robustness_report(
    evaluate: Callable[[Transform | None], SplitResult],
    modalities: Sequence[str],
    monitor: str,
    split: str,
) -> dict[str, Any]:
    """Evaluate every subset of ``modalities`` (``evaluate`` takes an input transform, or
    ``None`` for the inputs as they are) and compute the Shapley values of ``monitor``;
    :func:`robustness_view` of its subsets."""
    return robustness_view(SubsetEvaluations(evaluate, modalities), monitor, split)


def robustness_view(evaluations: SubsetEvaluations, monitor: str, split: str) -> dict[str, Any]:
    """The metrics of every subset of modalities, the Shapley values of ``monitor`` and the
    drop curves.

    Returns ``{"split", "monitor", "subsets": [{"modalities": [...], "metrics": {...}}],
    "shapley": {name: value}, "all": v(all), "none": v(none), "drop_curves": {name:
    [{"rate", "metrics"}]}}``.
    """
    names = evaluations.names
    if len(names) > MAX_MODALITIES:
        raise ValueError(f"{len(names)} modalities need {2 ** len(names)} evaluations; the "
                         f"robustness report takes at most {MAX_MODALITIES}")
    rows, value = [], {}
    evaluations.prefetch(subsets(names))
    for group in subsets(names):
        result = evaluations.kept(group)
        rows.append({"modalities": list(group), "metrics": result.metrics})
        value[frozenset(group)] = float(result.metrics.get(monitor, float("nan")))
    curves = {}
    for name in names:  # the metric as ever more rows lack one modality
        points = [{"rate": 0.0, "metrics": rows[-1]["metrics"]}]
        for rate in DROP_RATES:
            result = evaluations.evaluate(_row_dropper(name, rate))
            points.append({"rate": rate, "metrics": result.metrics})
        without = next(r for r in rows if set(r["modalities"]) == set(names) - {name})
        points.append({"rate": 1.0, "metrics": without["metrics"]})
        curves[name] = points
    return {
        "split": split, "monitor": monitor, "subsets": rows,
        "shapley": shapley_values(value, names),
        "all": value[frozenset(names)], "none": value[frozenset()],
        "drop_curves": curves,
    }


def _row_dropper(name: str, rate: float) -> Transform:
    """Hide ``name`` from each row with probability ``rate``; the draws are seeded, so every
    evaluation of the same split hides the same rows."""
    generator = torch.Generator().manual_seed(DROP_SEED)

    def transform(inputs: dict[str, ModalityBatch]) -> dict[str, ModalityBatch]:
        batch = inputs[name]
        drop = torch.rand(batch.present.shape[0], generator=generator) < rate
        return {**inputs, name: hide(batch, drop.to(batch.present.device))}

    return transform


def format_robustness(report: Mapping[str, Any]) -> str:
    """The monitored metric for each subset, then each modality's Shapley value."""
    monitor = report["monitor"]
    lines = [f"robustness ({report['split']} split, {monitor})", ""]
    width = max(len(", ".join(r["modalities"]) or "(none)") for r in report["subsets"])
    for row in report["subsets"]:
        label = ", ".join(row["modalities"]) or "(none)"
        figure = row["metrics"].get(monitor, float("nan"))
        lines.append(f"  {label.ljust(width)}  {figure:.4f}")
    lines += ["", f"Shapley values (sum = {report['all']:.4f} - {report['none']:.4f}):"]
    for name, phi in sorted(report["shapley"].items(), key=lambda kv: -abs(kv[1])):
        lines.append(f"  {name.ljust(width)}  {phi:+.4f}")
    curves = report.get("drop_curves") or {}
    if curves:
        rates = [p["rate"] for p in next(iter(curves.values()))]
        lines += ["", "rows without the modality: " + "  ".join(f"{r:>6.0%}" for r in rates)]
        for name, points in curves.items():
            figures = "  ".join(f"{p['metrics'].get(monitor, float('nan')):6.4f}"
                                for p in points)
            lines.append(f"  {name.ljust(width)}  {figures}")
    return "\n".join(lines)
