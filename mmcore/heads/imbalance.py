"""Class imbalance for the classification head: per-class weights and the focal loss.

Weights are resolved once, on the train split, into ``fitted_class_weights`` (one float per
class, in the order of ``classes``); the spec keeps what the user wrote in ``class_weights``,
so a resumed run compares equal to its saved spec. The weights import no torch: the data layer
fits them when ``mmcore validate`` checks a spec (:mod:`mmcore.heads.targets`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mmcore.errors import DataError

if TYPE_CHECKING:
    from torch import Tensor


def class_index(classes: Sequence[Any]) -> dict[Any, int]:
    """Class value (or its text) -> position in ``classes``."""
    index: dict[Any, int] = {c: i for i, c in enumerate(classes)}
    index.update({str(c): i for i, c in enumerate(classes)})
    return index


def lookup(index: Mapping[Any, int], value: Any) -> int | None:
    """Position of a raw label (numpy scalars unwrapped, then matched as is or as text)."""
    key = value.item() if isinstance(value, np.generic) else value
    try:
        if key in index:
            return index[key]
    except TypeError:  # unhashable label: not a class
        return None
    return index.get(str(key))


#: ``"balanced"`` weights are at most this many times apart (the long-tail cap)
BALANCED_MAX_RATIO = 5.0


def balanced_weights(values: Sequence[Any], classes: Sequence[Any]) -> list[float]:
    """sklearn's ``"balanced"`` weights ``n_samples / (n_classes * count_c)`` from the train
    split's labels, with each count taken as at least ``1 / BALANCED_MAX_RATIO`` of the
    largest class's: on a long tail (tens of classes of one or two rows) uncapped weights let
    a few rare rows dominate the loss and training collapses (measured, docs/training.md);
    where the classes are at most 5 times apart the weights are sklearn's. Labels that are no
    class are not counted; a class absent from ``values`` counts as one row."""
    index = class_index(classes)
    counts = np.zeros(len(classes), dtype=np.int64)
    for value in values:
        k = lookup(index, value)
        if k is not None:
            counts[k] += 1
    n = int(counts.sum())
    floor = max(1.0, float(counts.max(initial=0)) / BALANCED_MAX_RATIO)
    return [float(n / (len(classes) * max(float(c), floor))) for c in counts]


def resolve_class_weights(
    classes: Sequence[Any], class_weights: Any, values: Sequence[Any] = ()
) -> list[float]:
    """One weight per class from the ``class_weights`` option: ``"balanced"`` (computed from
    ``values``), a list in the order of ``classes``, or a dict class -> weight (classes left
    out weigh 1.0). Raises :class:`DataError` naming the option when it does not fit
    ``classes``."""
    if class_weights == "balanced":
        return balanced_weights(values, classes)
    if isinstance(class_weights, Mapping):
        index = class_index(classes)
        out = [1.0] * len(classes)
        unknown = []
        for key, weight in class_weights.items():
            k = lookup(index, key)
            if k is None:
                unknown.append(key)
            else:
                out[k] = float(weight)
        if unknown:
            raise DataError(
                f"class_weights names {', '.join(map(repr, unknown))}, which is not a class; "
                f"the classes are {list(classes)}"
            )
        return out
    weights = [float(w) for w in class_weights]
    if len(weights) != len(classes):
        raise DataError(
            f"class_weights has {len(weights)} value(s) but there are {len(classes)} classes "
            f"{list(classes)}; give one weight per class in that order, a dict "
            "class -> weight, or 'balanced'"
        )
    return weights


def focal_loss(
    logits: Tensor, target: Tensor, gamma: float, weight: Tensor | None = None
) -> Tensor:
    """Focal loss (Lin et al., 2017): ``-alpha_t (1 - p_t)^gamma log p_t`` per row, with
    ``alpha_t = weight[target]`` (1 without ``weight``).

    ``logits`` is ``[B, C]``, ``target`` ``[B]`` class indices. Reduced like
    ``F.cross_entropy``: the sum divided by the sum of the rows' ``alpha_t`` (the mean without
    ``weight``), so ``gamma=0`` gives exactly the (weighted) cross-entropy.
    """
    import torch  # here, not above: the weights (validate's data checks) need no torch
    from torch.nn import functional as F

    log_p = F.log_softmax(logits.float(), dim=-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
    # 1 - p_t computed as -expm1(log p_t): exact when p_t is close to 1
    per_row = -(-torch.expm1(log_p)).clamp_min(0).pow(gamma) * log_p
    if weight is None:
        return per_row.mean()
    alpha = weight.to(per_row.device, per_row.dtype)[target]
    return (alpha * per_row).sum() / alpha.sum()
