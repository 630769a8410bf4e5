"""Temperature scaling (Guo et al., 2017): one number per classification head, fitted on the
validation split at the end of training, that divides the logits before the softmax so the
predicted probabilities match how often they are right. The predicted class never changes.

Label smoothing (on by default) trains logits that are too timid for their accuracy; this is
what puts the probabilities back."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

#: the temperature is kept within these bounds (a split of a few rows cannot push it further)
BOUNDS = (0.05, 20.0)


def fit_temperature(logits: Tensor, targets: Tensor, steps: int = 100) -> float:
    """The temperature ``T`` minimising the cross-entropy of ``softmax(logits / T)`` against
    ``targets`` (class indices, rows with a negative index left out): a one-parameter
    convex problem in ``log T``, solved with L-BFGS. ``1.0`` when no row is left."""
    keep = targets >= 0
    z, y = logits.detach().float()[keep], targets[keep].long()
    if y.numel() == 0:
        return 1.0
    log_t = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")
    low, high = math.log(BOUNDS[0]), math.log(BOUNDS[1])

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(z / log_t.clamp(low, high).exp(), y)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    value = float(log_t.detach().clamp(low, high).exp())
    return value if math.isfinite(value) else 1.0
