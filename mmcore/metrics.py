"""Metrics computed over a whole split from concatenated outputs and targets."""

from __future__ import annotations

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


def binary_auroc(scores: Tensor, positive: Tensor) -> float:
    """Area under the ROC curve of ``scores`` for the boolean ``positive``: the Mann-Whitney
    statistic with tied scores given their average rank (ties count one half). ``nan`` when
    either class is absent."""
    from scipy.stats import rankdata

    pos = int(positive.sum())
    neg = positive.numel() - pos
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = rankdata(scores.double().cpu().numpy())
    rank_sum = float(ranks[positive.cpu().numpy()].sum())
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def binary_average_precision(scores: Tensor, positive: Tensor) -> float:
    """Average precision: the precision at each distinct score threshold (tied scores form
    one threshold), weighted by the recall gained there (scikit-learn's
    ``average_precision_score``). ``nan`` without positives."""
    total = int(positive.sum())
    if total == 0:
        return float("nan")
    order = torch.argsort(scores.double(), descending=True, stable=True)
    s, hit = scores.double()[order], positive[order].double()
    last = torch.ones_like(s, dtype=torch.bool)  # the last row of each group of tied scores
    last[:-1] = s[1:] != s[:-1]
    tp = hit.cumsum(0)[last]
    seen = torch.arange(1, len(s) + 1, dtype=torch.float64)[last]
    recall = tp / total
    gained = torch.diff(recall, prepend=torch.zeros(1, dtype=torch.float64))
    return (gained * tp / seen).sum().item()


def macro_one_vs_rest(probs: Tensor, target: Tensor, score) -> float:
    """``score(probs[:, k], target == k)`` averaged over the classes with both positives and
    negatives in ``target``; with 2 classes, the score of class 1 alone (binary)."""
    if probs.shape[1] == 2:
        return score(probs[:, 1], target == 1)
    values = [score(probs[:, k], target == k) for k in range(probs.shape[1])]
    values = [v for v in values if v == v]  # drop nan: classes absent (or alone) in target
    return sum(values) / len(values) if values else float("nan")


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
