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
