"""Metrics computed over a whole split from concatenated outputs and targets."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def accuracy(pred: Tensor, target: Tensor) -> float:
    return (pred == target).float().mean().item() if target.numel() else float("nan")


def top_k_accuracy(logits: Tensor, target: Tensor, k: int) -> float:
    k = min(k, logits.shape[-1])
    top = logits.topk(k, dim=-1).indices
    return (top == target.unsqueeze(-1)).any(-1).float().mean().item()


def f1_scores(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """Per-class F1 from class indices; classes absent from both pred and target get F1 = 0."""
    idx = target * num_classes + pred
    confusion = torch.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)
    tp = confusion.diag().float()
    precision_den = confusion.sum(0).float()
    recall_den = confusion.sum(1).float()
    denom = precision_den + recall_den
    return torch.where(denom > 0, 2 * tp / denom.clamp_min(1), torch.zeros_like(tp))


def macro_f1(pred: Tensor, target: Tensor, num_classes: int) -> float:
    """Macro-F1 over the classes that occur in the targets or the predictions."""
    scores = f1_scores(pred, target, num_classes)
    seen = torch.bincount(target, minlength=num_classes) + torch.bincount(
        pred, minlength=num_classes
    )
    return scores[seen > 0].mean().item() if (seen > 0).any() else float("nan")


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """``[num_classes, num_classes]`` counts, rows = true class, columns = predicted."""
    idx = target * num_classes + pred
    return torch.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def balanced_accuracy(pred: Tensor, target: Tensor, num_classes: int) -> float:
    """The mean recall over the classes that occur in the targets (scikit-learn's
    ``balanced_accuracy_score``)."""
    confusion = confusion_matrix(pred, target, num_classes).double()
    support = confusion.sum(1)
    seen = support > 0
    if not seen.any():
        return float("nan")
    return (confusion.diag()[seen] / support[seen]).mean().item()


def auroc(scores: Tensor, positive: Tensor) -> Tensor:
    """Per column of ``scores`` (``[N, C]``) and the boolean ``positive`` (the same shape): the
    area under the ROC curve, the Mann-Whitney statistic with tied scores given their average
    rank (ties count one half); ``nan`` for a column without both classes or with a ``nan``
    score. All columns in a few tensor operations, however many classes."""
    scores, positive = scores.double(), positive.bool()
    n = len(scores)
    pos = positive.sum(0).double()
    neg = n - pos
    ranked, order = scores.sort(dim=0, stable=True)
    ids = _tie_groups(ranked)
    f64, device = torch.float64, scores.device
    position = torch.arange(1, n + 1, dtype=f64, device=device).unsqueeze(1).expand_as(ranked)
    # the average position of each group of tied scores, at each of its rows
    flat = ids.flatten()
    total = torch.zeros(len(flat), dtype=f64, device=device).index_add_(0, flat,
                                                                        position.flatten())
    count = torch.zeros(len(flat), dtype=f64, device=device).index_add_(
        0, flat, torch.ones(len(flat), dtype=f64, device=device))
    rank = (total / count.clamp_min(1))[ids]
    rank_sum = (rank * positive.gather(0, order)).sum(0)
    area = (rank_sum - pos * (pos + 1) / 2) / (pos * neg)
    return torch.where((pos > 0) & (neg > 0) & ~scores.isnan().any(0), area, torch.nan)


def average_precision(scores: Tensor, positive: Tensor) -> Tensor:
    """Per column of ``scores`` (``[N, C]``) and the boolean ``positive``: the precision at
    each distinct score threshold (tied scores form one threshold), weighted by the recall
    gained there (scikit-learn's ``average_precision_score``); ``nan`` for a column without
    positives or with a ``nan`` score."""
    scores, positive = scores.double(), positive.bool()
    total = positive.sum(0).double()
    ranked, order = scores.sort(dim=0, descending=True, stable=True)
    hit = positive.gather(0, order).double()
    ids = _tie_groups(ranked)
    last = torch.ones_like(ranked, dtype=torch.bool)  # the last row of each group of ties
    last[:-1] = ranked[1:] != ranked[:-1]
    f64, device = torch.float64, scores.device
    seen = torch.arange(1, len(scores) + 1, dtype=f64, device=device).unsqueeze(1)
    precision = hit.cumsum(0) / seen
    # each positive gains 1/total recall at its group's threshold, where the precision is
    # the group's last row's
    at_threshold = torch.zeros(ids.numel(), dtype=f64, device=device)
    at_threshold[ids[last]] = precision[last]
    value = (hit * at_threshold[ids]).sum(0) / total
    return torch.where((total > 0) & ~scores.isnan().any(0), value, torch.nan)


def _tie_groups(ranked: Tensor) -> Tensor:
    """For each row of the sorted columns ``ranked``, an id shared by the rows of its group of
    tied scores and by no other (unique across columns)."""
    n, columns = ranked.shape
    starts = torch.ones_like(ranked, dtype=torch.bool)
    starts[1:] = ranked[1:] != ranked[:-1]
    return starts.long().cumsum(0) - 1 + n * torch.arange(columns, device=ranked.device)


def macro_one_vs_rest(probs: Tensor, target: Tensor,
                      score: Callable[[Tensor, Tensor], Tensor]) -> float:
    """``score`` (:func:`auroc` or :func:`average_precision`) of each class's column against
    ``target == k``, averaged over the classes with a figure (both positives and negatives in
    ``target``, for AUROC); with 2 classes, the score of class 1 alone (binary)."""
    positive = target.reshape(-1, 1) == torch.arange(probs.shape[1], device=target.device)
    if probs.shape[1] == 2:
        return score(probs[:, 1:], positive[:, 1:]).item()
    values = score(probs, positive)
    values = values[~values.isnan()]  # classes absent (or alone) in target
    return values.mean().item() if len(values) else float("nan")


def expected_calibration_error(probs: Tensor, target: Tensor, bins: int = 15) -> float:
    """ECE: the gap between confidence (the top probability) and accuracy, averaged over
    ``bins`` equal-width confidence bins weighted by their share of rows."""
    if target.numel() == 0:
        return float("nan")
    confidence, pred = probs.max(-1)
    correct = (pred == target).double()
    which = (confidence.double() * bins).ceil().clamp(1, bins).long() - 1  # (0, 1/bins] -> 0
    conf = torch.zeros(bins, dtype=torch.float64).index_add_(0, which, confidence.double())
    acc = torch.zeros(bins, dtype=torch.float64).index_add_(0, which, correct)
    return ((conf - acc).abs().sum() / target.numel()).item()


def r2_score(pred: Tensor, target: Tensor) -> float:
    """Coefficient of determination per output column, averaged (scikit-learn's
    ``r2_score``; a constant column scores 1 when predicted exactly, else 0)."""
    pred, target = pred.double().reshape(len(pred), -1), target.double().reshape(len(pred), -1)
    residual = (target - pred).pow(2).sum(0)
    total = (target - target.mean(0)).pow(2).sum(0)
    scores = torch.where(total > 0, 1 - residual / total.clamp_min(1e-300),
                         (residual == 0).double())
    return scores.mean().item() if len(pred) else float("nan")
