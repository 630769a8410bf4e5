"""Training health checks: signs that a run is not learning, each reported once.

The checks are pure functions over numbers (losses, accuracies, class frequencies) that return
a :class:`HealthWarning` or ``None``. :class:`HealthChecks` runs them on a trainer's figures
(after each epoch and after the modality report), prints each new warning once and keeps them
all in the run folder's ``health.json``::

    {"warnings": [{"check": "loss_at_chance", "subject": "label", "epoch": 3,
                   "message": "...", "suggestions": ["..."], "figures": {"train_loss": 1.09}}]}

A warning is told apart by ``(check, subject)``: a resumed run does not repeat one it already
recorded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmcore.errors import CheckpointError, DataError
from mmcore.run.checkpoint import atomic_write_json, read_json

LOSS_AT_CHANCE = "loss_at_chance"
MODALITY_AT_CHANCE = "modality_at_chance"
#: epochs (or all of them, when a run has fewer) the loss must stay at chance for a warning
PATIENCE = 3
#: a training loss above ``(1 - LOSS_TOLERANCE) * chance`` counts as "at chance"
LOSS_TOLERANCE = 0.05
#: the smallest accuracy margin over the chance rate that counts as "above chance"
MIN_MARGIN = 0.02
#: the modality dropout the dead-modality warning suggests
SUGGESTED_DROPOUT = 0.25
#: the modality loss it suggests (``train.modality_loss``'s default)
SUGGESTED_LOSS = 1


@dataclass(frozen=True)
class HealthWarning:
    """One finding: ``check`` (its kind), ``subject`` (the head or modality it is about), a
    one-line ``message``, what to try (``suggestions``), the ``epoch`` it was found after
    (``None``: after training) and the numbers behind it (``figures``)."""

    check: str
    subject: str
    message: str
    suggestions: tuple[str, ...] = ()
    epoch: int | None = None
    figures: Mapping[str, float] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.check, self.subject)

    def format(self) -> str:
        """The message and one indented line per suggestion, as the trainer prints it."""
        return "\n".join([f"warning: {self.message}", *(f"  - {s}" for s in self.suggestions)])

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "subject": self.subject, "epoch": self.epoch,
                "message": self.message, "suggestions": list(self.suggestions),
                "figures": dict(self.figures)}

    @classmethod
    def from_json(cls, data: Any) -> HealthWarning | None:
        """The warning an entry of ``health.json`` describes, or ``None`` when the entry is
        not one (it is read as data: only strings, numbers and lists of strings are kept)."""
        if not isinstance(data, dict):
            return None
        check, subject, message = data.get("check"), data.get("subject"), data.get("message", "")
        if not all(isinstance(v, str) for v in (check, subject, message)):
            return None
        epoch = data.get("epoch")
        suggestions = data.get("suggestions", [])
        figures = data.get("figures", {})
        return cls(
            check, subject, message,
            tuple(s for s in suggestions if isinstance(s, str))
            if isinstance(suggestions, list) else (),
            epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None,
            {k: float(v) for k, v in figures.items() if isinstance(k, str) and _is_number(v)}
            if isinstance(figures, dict) else {},
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# -- the numbers ------------------------------------------------------------------------------
def class_prior(counts: Sequence[float]) -> list[float]:
    """Class frequencies from counts (uniform when there are none)."""
    total = float(sum(counts))
    if total <= 0:
        return [1.0 / len(counts)] * len(counts) if counts else []
    return [c / total for c in counts]


def chance_loss(
    prior: Sequence[float],
    class_weights: Sequence[float] | None = None,
    label_smoothing: float = 0.0,
) -> float:
    """The cross-entropy (nats) of the best prediction that ignores the inputs: always the
    same class probabilities. That is the entropy of ``prior`` for plain cross-entropy, and
    ``ln K`` for ``K`` equally frequent classes.

    With PyTorch's ``weight`` and ``label_smoothing`` (mean reduction) the loss of a constant
    prediction ``q`` is ``sum_c a_c (-ln q_c) / S`` with ``a_c = w_c ((1 - e) p_c + e / K)``
    and ``S = sum_c w_c p_c``; the best ``q`` is ``a / sum(a)``.
    """
    k = len(prior)
    if k == 0:
        return 0.0
    weights = list(class_weights) if class_weights is not None else [1.0] * k
    a = [w * ((1 - label_smoothing) * p + label_smoothing / k)
         for w, p in zip(weights, prior, strict=True)]
    total, norm = sum(a), sum(w * p for w, p in zip(weights, prior, strict=True))
    if total <= 0 or norm <= 0:
        return math.log(k)
    return -sum(x * math.log(x / total) for x in a if x > 0) / norm


def accuracy_margin(rate: float, rows: int | None) -> float:
    """How far above the chance ``rate`` an accuracy over ``rows`` rows must be to count as
    above chance: two binomial standard deviations, at least :data:`MIN_MARGIN`."""
    if not rows:
        return MIN_MARGIN
    return max(MIN_MARGIN, 2 * math.sqrt(max(rate * (1 - rate), 0.0) / rows))


# -- the checks -------------------------------------------------------------------------------
def loss_at_chance(
    head: str,
    losses: Sequence[float],
    chance: float,
    *,
    epoch: int | None = None,
    accuracy: float | None = None,
    chance_accuracy: float | None = None,
    rows: int | None = None,
    lr: float | None = None,
    class_weights: Sequence[float] | None = None,
) -> HealthWarning | None:
    """Warn when every one of ``losses`` (a classification head's training loss over the
    last epochs) stays within :data:`LOSS_TOLERANCE` of (or above) the ``chance`` loss and
    the validation ``accuracy``, when given, is not above ``chance_accuracy`` (the majority
    class's share) by :func:`accuracy_margin` over ``rows``. A weighted loss
    (``class_weights``, the head's resolved weights) is named first among the causes."""
    values = [float(v) for v in losses]
    if not values or not all(math.isfinite(v) for v in values) or chance <= 0:
        return None
    if min(values) < (1 - LOSS_TOLERANCE) * chance:
        return None
    figures = {"train_loss": values[-1], "chance_loss": chance}
    seen = ""
    if accuracy is not None and chance_accuracy is not None:
        if accuracy > chance_accuracy + accuracy_margin(chance_accuracy, rows):
            return None
        figures.update(validation_accuracy=accuracy, chance_accuracy=chance_accuracy)
        seen = (f", and its validation accuracy ({accuracy:.3f}) is at the majority-class "
                f"rate ({chance_accuracy:.3f})")
    n = len(values)
    message = (
        f"head {head!r} is not learning: its training loss ({values[-1]:.4f}) has stayed at "
        f"the chance level ({chance:.4f}, the loss of predicting the class frequencies "
        f"whatever the input) for {n} epoch{'s' if n != 1 else ''}{seen}. Likely causes:"
    )
    rate = f"train.lr={lr:g} now: try train.lr={lr / 10:g} and train.lr={lr * 10:g}" if lr \
        else "try train.lr ten times lower and ten times higher"
    weighting = ()
    if class_weights is not None and len(class_weights) and min(class_weights) > 0:
        low, high = min(class_weights), max(class_weights)
        figures.update(class_weight_min=low, class_weight_max=high)
        weighting = (
            f"the class weights (the head's class_weights, from {low:.3g} to {high:.3g}, "
            f"{high / low:.3g}x): a few rows of rare classes can dominate the loss; train once "
            "without class_weights, or with milder weights (a dict class -> weight; "
            "docs/training.md#class-imbalance)",
        )
    suggestions = (
        *weighting,
        f"a learning rate too high or too low ({rate})",
        "input channels on very different scales: check each modality's normalisation "
        "option (docs/plugins/)",
        "sequences too long for a recurrent encoder: shorten them with a smaller max_length "
        "or the sequence plugins' `transforms` option (resample, envelope; see "
        "docs/plugins/gesture.md)",
        "labels that do not depend on the inputs: check the target column and that each "
        "row's label belongs to its inputs",
    )
    return HealthWarning(LOSS_AT_CHANCE, head, message, suggestions, epoch, figures)


def modality_at_chance(
    modality: str,
    head: str,
    only: float,
    fused: float,
    chance_accuracy: float,
    *,
    rows: int | None = None,
    modality_dropout: float = 0.0,
    modality_loss: float = 0.0,
    split: str = "test",
    without: float | None = None,
) -> HealthWarning | None:
    """Warn when a head's accuracy with ``modality`` alone (``only``, from the modality
    report) is at the ``chance_accuracy`` (the majority class's share of the split) while
    with all modalities (``fused``) it is clearly above it (twice the margin).

    ``without`` (the report's accuracy with the modality hidden) tells the two cases apart:
    when hiding it costs more than the margin, the model uses it, only jointly with the others
    (not a dead branch), and the warning says so. The suggestions depend on whether the run
    trained each modality alone at all (``modality_dropout`` or ``modality_loss`` above 0)."""
    trained_alone = modality_dropout > 0 or modality_loss > 0
    if not all(math.isfinite(v) for v in (only, fused, chance_accuracy)):
        return None
    margin = accuracy_margin(chance_accuracy, rows)
    if fused <= chance_accuracy + 2 * margin or only > chance_accuracy + margin:
        return None
    figures = {"only_accuracy": only, "fused_accuracy": fused, "chance_accuracy": chance_accuracy,
               "margin": margin, "rows": rows}
    at_chance = (
        f"modality {modality!r} alone scores at chance on the {split} split ({head}.accuracy "
        f"{only:.3f}, majority class {chance_accuracy:.3f}, within the margin {margin:.3f} "
        f"that {rows if rows else 'its'} rows allow) while all modalities together "
        f"score {fused:.3f}"
    )
    if without is not None and math.isfinite(without) and fused - without > margin:
        figures["without_accuracy"] = without
        message = (
            f"{at_chance}, and {without:.3f} without it: the model uses it only jointly with "
            "the other modalities, so a row that lacks those gets no help from it"
        )
        suggestions = (
            f"train with train.modality_loss={SUGGESTED_LOSS} (the default) or "
            f"train.modality_dropout={SUGGESTED_DROPOUT} if the modality must also work alone",
        ) if not trained_alone else (
            f"train a spec with {modality!r} alone to see whether it predicts the target at "
            "all by itself",
        )
        return HealthWarning(MODALITY_AT_CHANCE, modality, message, suggestions, None, figures)
    message = (
        f"{at_chance}: the model may ignore it (a dead branch), or it may carry nothing "
        "about the target"
    )
    if not trained_alone:
        suggestions = (
            f"train with train.modality_loss={SUGGESTED_LOSS} (the default) so that the model "
            "learns from each modality, then compare the modality report's 'only' column",
        )
    else:
        suggestions = (
            f"train a spec with {modality!r} alone to see whether it predicts the target at "
            "all; if it does, check its encoder options and preprocessing",
        )
    return HealthWarning(MODALITY_AT_CHANCE, modality, message, suggestions, None, figures)


# -- in a run ---------------------------------------------------------------------------------
class HealthChecks:
    """The health warnings of one run: each is printed (through ``note``) once and recorded in
    ``path`` (``health.json``). With ``resume`` the warnings already in ``path`` are kept and
    not printed again."""

    def __init__(self, path: Path, note: Callable[[str], None], *, resume: bool = False) -> None:
        self.path = Path(path)
        self.note = note
        self.warnings: list[HealthWarning] = []
        self._priors: dict[str, list[float]] = {}
        if resume and self.path.is_file():
            try:
                data = read_json(self.path)
            except CheckpointError as exc:
                note(f"{exc}: its earlier warnings are dropped")
                data = {}
            entries = data.get("warnings") if isinstance(data, dict) else None
            found = map(HealthWarning.from_json, entries if isinstance(entries, list) else [])
            self.warnings = [w for w in found if w is not None]

    def add(self, found: Iterable[HealthWarning | None]) -> list[HealthWarning]:
        """Print and record the warnings in ``found`` not reported before; returns them."""
        known = {w.key for w in self.warnings}
        new = []
        for warning in found:
            if warning is not None and warning.key not in known:
                known.add(warning.key)
                new.append(warning)
                self.note(warning.format())
        if new:
            self.warnings += new
            atomic_write_json(self.path, {"warnings": [w.to_json() for w in self.warnings]})
        return new

    def after_epoch(self, trainer: Any) -> list[HealthWarning]:
        """The loss check for each classification head over the trainer's last
        :data:`PATIENCE` epochs (all of them when ``train.epochs`` is smaller)."""
        train = trainer.spec.train
        window = min(PATIENCE, getattr(trainer, "epochs", None) or PATIENCE)
        recent = trainer.history[-window:]
        if len(recent) < window:
            return []
        found = []
        for name, head in _classification_heads(trainer.model):
            options = head.options
            if getattr(options, "loss", "cross_entropy") != "cross_entropy":
                continue  # the focal loss has no closed-form chance level here
            losses = [r.get(f"train/{name}.loss", math.nan) for r in recent]
            k = len(head.classes)
            prior = self._prior(trainer, name, k)
            # the balanced sampler feeds every class equally often, whatever the prior
            seen = [1.0 / k] * k if getattr(train, "sampler", None) == "balanced" else prior
            weights = getattr(head, "class_weights", None)
            smoothing = getattr(options, "smoothing", None)  # the built-in head's default
            if smoothing is None:
                smoothing = getattr(options, "label_smoothing", None) or 0.0
            chance = chance_loss(seen, None if weights is None else weights.tolist(), smoothing)
            key = f"validation/{name}.accuracy"
            accuracies = [r[key] for r in recent if _is_number(r.get(key))]
            found.append(loss_at_chance(
                name, losses, chance, epoch=recent[-1].get("epoch"),
                accuracy=max(accuracies) if accuracies else None,
                chance_accuracy=max(prior) if accuracies else None,
                rows=trainer.data.num_rows("validation") if accuracies else None, lr=train.lr,
                class_weights=None if weights is None else weights.tolist(),
            ))
        return self.add(found)

    def after_report(self, trainer: Any, results: Mapping[str, Any]) -> list[HealthWarning]:
        """The dead-modality check for each modality and classification head, from
        ``trainer.modality_report`` and the split results (their targets give the chance
        rate)."""
        report = trainer.modality_report
        if not report or len(report.get("modalities", {})) < 2:
            return []
        split = report["split"]
        result = results.get(split)
        found = []
        for name, head in _classification_heads(trainer.model):
            targets = getattr(result, "targets", {}).get(name)
            fused = report["baseline"].get(f"{name}.accuracy")
            if targets is None or len(targets) == 0 or fused is None:
                continue
            counts = targets.long().bincount(minlength=len(head.classes)).tolist()
            chance = max(class_prior(counts))
            for modality, entry in report["modalities"].items():
                only = entry["only"].get(f"{name}.accuracy")
                if only is not None:
                    found.append(modality_at_chance(
                        modality, name, only, fused, chance, rows=len(targets),
                        modality_dropout=trainer.spec.train.modality_dropout,
                        modality_loss=trainer.spec.train.modality_loss, split=split,
                        without=entry.get("without", {}).get(f"{name}.accuracy"),
                    ))
        return self.add(found)

    def _prior(self, trainer: Any, name: str, k: int) -> list[float]:
        """The head's class frequencies on the train split, when the data module can give
        them (the first classification head, data not streamed); else uniform."""
        if name not in self._priors:
            prior = [1.0 / k] * k
            first = next(iter(_classification_heads(trainer.model)), (None,))[0]
            if name == first and not getattr(trainer.data, "streaming", True):
                try:
                    codes = trainer.data.class_codes("train")
                    counts = [0] * k
                    for code in codes.tolist():
                        if 0 <= code < k:
                            counts[code] += 1
                    prior = class_prior(counts)
                except (DataError, KeyError, ValueError, OSError):
                    pass  # the uniform prior: ln K is the chance loss of a uniform guess
            self._priors[name] = prior
        return self._priors[name]


def _classification_heads(model: Any) -> list[tuple[str, Any]]:
    return [(n, h) for n, h in model.heads.items() if getattr(h, "categorical", False)]
