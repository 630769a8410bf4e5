"""The target side of a head, without torch: fitting a vocabulary or a standardisation on the
train split's values, encoding raw values for the loss, and whether the head is categorical.

:class:`HeadTargets` holds the defaults of :class:`~mmcore.head.Head`, which inherits them;
each built-in head inherits its own class here (``ClassificationHead`` from
:class:`ClassificationTargets`, ...). The data layer fits and checks targets through
:func:`head_targets`, so ``mmcore validate`` checks a built-in head's options against the
data without importing its torch module; a plugin's head is imported, and its own
``fit_targets`` used, as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from mmcore.errors import SpecError
from mmcore.heads.imbalance import class_index, lookup, resolve_class_weights

if TYPE_CHECKING:
    from mmcore.plugins.registry import Registration


class HeadTargets:
    """What the data layer and ``mmcore validate`` need of a head: ``fit_targets``,
    ``encode_targets``, ``categorical`` and the metrics it reports; the defaults fit nothing,
    encode numbers as float32 and report no metric."""

    #: the metric names this head reports, the first being the default to monitor.
    metric_names: ClassVar[tuple[str, ...]] = ()
    #: whether a larger value is better (of every metric, unless ``metric_directions`` says
    #: otherwise for one).
    greater_is_better: ClassVar[bool] = True
    #: metrics whose direction differs from ``greater_is_better`` (name -> larger is better)
    metric_directions: ClassVar[dict[str, bool]] = {}

    #: one class per row out of ``self.classes``, ``forward`` giving ``[B, len(classes)]``
    #: logits: stratified splits and the balanced sampler go by the first such head's
    #: target, its confusion matrix is plotted and its loss is compared with chance
    categorical: ClassVar[bool] = False

    @staticmethod
    def fit_targets(values: Sequence[Any], options: dict[str, Any]) -> dict[str, Any]:
        """Fitted target state (e.g. ``{"classes": [...]}``) from the training split's values.

        The result is stored in the resolved spec and passed back as options, so the same
        encoding is used at prediction time. Default: nothing to fit.
        """
        return {}

    @staticmethod
    def encode_targets(values: Sequence[Any], options: dict[str, Any]) -> np.ndarray:
        """Raw column values -> an array the loss takes. Raise ``ValueError`` naming bad values."""
        return np.asarray(values, dtype=np.float32)


def sorted_classes(values: Sequence[Any]) -> list[Any]:
    """Distinct values, numerically sorted when all are numbers, else sorted as text."""
    distinct = {v.item() if isinstance(v, np.generic) else v for v in values if v is not None}
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in distinct):
        return sorted(distinct)
    return sorted(distinct, key=str)


class ClassificationTargets(HeadTargets):
    """Single-label targets: class values -> int64 indices into ``classes``."""

    categorical = True
    metric_names = ("accuracy", "macro_f1", "top_k", "balanced_accuracy", "auroc",
                    "average_precision", "ece")
    greater_is_better = True
    metric_directions = {"ece": False}

    @staticmethod
    def fit_targets(values: Sequence[Any], options: dict[str, Any]) -> dict[str, Any]:
        """``classes`` (unless given) and, with ``class_weights``, ``fitted_class_weights``
        (``"balanced"`` counted on ``values``). Raises :class:`~mmcore.errors.DataError` when
        ``class_weights`` does not fit the classes."""
        out: dict[str, Any] = {}
        classes = options.get("classes")
        if not classes:
            classes = out["classes"] = sorted_classes(values)
        if options.get("class_weights") is not None and not options.get("fitted_class_weights"):
            out["fitted_class_weights"] = resolve_class_weights(
                classes, options["class_weights"], values
            )
        return out

    @staticmethod
    def encode_targets(values: Sequence[Any], options: dict[str, Any]) -> np.ndarray:
        """``[N]`` int64 class indices; a ``ValueError`` names a label that is no class."""
        classes = options["classes"]
        index = class_index(classes)
        out = np.empty(len(values), dtype=np.int64)
        for row, value in enumerate(values):
            k = lookup(index, value)
            if k is None:
                key = value.item() if isinstance(value, np.generic) else value
                raise ValueError(f"label {key!r} is not one of the classes {classes}")
            out[row] = k
        return out


def labels(value: Any, separator: str) -> list[Any]:
    """A multi-label value's labels: a string split on ``separator``, else the list given."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(separator) if part.strip()]
    return list(value)


class MultiLabelTargets(HeadTargets):
    """Multi-label targets: label lists (or separated strings) -> ``[N, classes]`` 0/1."""

    metric_names = ("micro_f1", "macro_f1", "exact_match")
    greater_is_better = True

    @staticmethod
    def fit_targets(values: Sequence[Any], options: dict[str, Any]) -> dict[str, Any]:
        """``classes``: every label seen, sorted (nothing when ``classes`` is given)."""
        if options.get("classes"):
            return {}
        sep = options.get("separator", ";")
        return {"classes": sorted_classes([x for v in values for x in labels(v, sep)])}

    @staticmethod
    def encode_targets(values: Sequence[Any], options: dict[str, Any]) -> np.ndarray:
        """``[N, len(classes)]`` float32, 1 where the row has the label."""
        classes = [str(c) for c in options["classes"]]
        index = {c: i for i, c in enumerate(classes)}
        out = np.zeros((len(values), len(classes)), dtype=np.float32)
        for row, value in enumerate(values):
            for label in labels(value, options.get("separator", ";")):
                if str(label) not in index:
                    raise ValueError(f"label {label!r} is not one of the classes {classes}")
                out[row, index[str(label)]] = 1.0
        return out


def as_matrix(values: Sequence[Any], size: int) -> np.ndarray:
    """``[N, size]`` float32 regression targets; a ``ValueError`` names what is wrong."""
    try:
        arr = np.asarray(values, dtype=np.float32).reshape(len(values), -1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"regression targets must be numbers: {exc}") from None
    if arr.shape[1] != size:
        raise ValueError(f"expected {size} target value(s) per row, got {arr.shape[1]}")
    if not np.isfinite(arr).all():
        row = int(np.argwhere(~np.isfinite(arr))[0, 0])
        raise ValueError(f"target of row {row} is not finite: {values[row]!r}")
    return arr


class RegressionTargets(HeadTargets):
    """Regression targets: numbers (or ``size`` numbers per row) -> float32."""

    metric_names = ("mae", "rmse", "r2")
    greater_is_better = False
    metric_directions = {"r2": True}

    @staticmethod
    def fit_targets(values: Sequence[Any], options: dict[str, Any]) -> dict[str, Any]:
        """``mean`` and ``std`` per value (a std of 0 taken as 1) when ``normalize`` is on
        and they are not given."""
        if not options.get("normalize", True) or options.get("mean") is not None:
            return {}
        arr = as_matrix(values, options.get("size", 1))
        std = arr.std(0)
        return {"mean": arr.mean(0).tolist(), "std": np.where(std > 0, std, 1.0).tolist()}

    @staticmethod
    def encode_targets(values: Sequence[Any], options: dict[str, Any]) -> np.ndarray:
        """``[N]`` float32 (``size=1``) or ``[N, size]``."""
        arr = as_matrix(values, options.get("size", 1))
        return arr[:, 0] if arr.shape[1] == 1 else arr


#: the built-in heads' implementations (as ``mmcore/builtin.py`` registers them) -> their
#: target side, reached without importing the torch module
BUILTIN: dict[str, type[HeadTargets]] = {
    "mmcore.heads.classification:ClassificationHead": ClassificationTargets,
    "mmcore.heads.multilabel:MultiLabelHead": MultiLabelTargets,
    "mmcore.heads.regression:RegressionHead": RegressionTargets,
}


def head_targets(registration: Registration) -> type[HeadTargets]:
    """The target side of a registered head: for a built-in head registered by its import
    path, its class here (no torch); else the implementation itself, imported (a plugin's
    head may override ``fit_targets``/``encode_targets``)."""
    impl = registration.impl
    if isinstance(impl, str) and impl in BUILTIN:
        return BUILTIN[impl]
    loaded: type[HeadTargets] = registration.load()
    return loaded


def check_monitor(requested: str | None, heads: Mapping[str, Any], source: str) -> dict[str, bool]:
    """Every name ``train.monitor`` may take -> whether larger is better; raise
    :class:`SpecError` when ``requested`` is not one. ``heads`` maps head names to heads,
    head classes or their target sides (``metric_names`` and ``greater_is_better`` are class
    attributes of :class:`HeadTargets`, so ``mmcore validate`` checks the monitor without
    importing torch)."""
    available = {"loss": False}
    for name, head in heads.items():
        available[f"{name}.loss"] = False
        for metric in head.metric_names:
            directions = getattr(head, "metric_directions", {})
            available[f"{name}.{metric}"] = bool(directions.get(metric, head.greater_is_better))
    if requested is not None and requested not in available:
        raise SpecError(source, [("train.monitor", f"unknown metric {requested!r}; "
                                  f"expected one of {', '.join(sorted(available))}")])
    return available
