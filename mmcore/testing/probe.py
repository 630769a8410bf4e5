"""``train_probe``: show that a small model learns through a modality's own pipeline.

A plugin's most convincing test trains its encoder on real data and checks that it beats
chance. :func:`train_probe` is that loop written once: ``fit`` -> ``preprocess`` -> ``collate``
-> ``build_encoder()`` + a linear classification head -> cross-entropy with Adam::

    probe = train_probe(modality, train_values, train_labels, epochs=5, lr=3e-3)
    assert probe.losses[-1] < 0.5 * probe.losses[0]
    assert probe.accuracy(valid_values, valid_labels) > 0.6   # chance: 0.1

torch is imported inside the functions, so ``import mmcore.testing`` stays torch-free.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch import nn

    from mmcore.encoder import Encoder
    from mmcore.modality import Modality


@dataclass
class Probe:
    """A trained ``encoder`` + linear ``head`` over a fitted ``modality``.

    ``losses`` holds each epoch's mean training loss (cross-entropy per sample, in nats);
    ``step_losses`` the loss of every optimiser step, in order. ``predict`` and ``accuracy``
    run in eval mode, ``batch_size`` values at a time, with torch set to ``threads`` threads.
    """

    modality: Modality[Any]
    encoder: Encoder
    head: nn.Linear
    batch_size: int
    threads: int | None
    losses: list[float] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)

    def predict(self, values: Sequence[Any]) -> np.ndarray:
        """Raw present values -> predicted class indices, int64 ``[N]``."""
        import torch

        arrays = _preprocess(self.modality, values, "value")
        self.encoder.eval()
        self.head.eval()
        chunks = []
        with _threads(self.threads), torch.no_grad():
            for start in range(0, len(arrays), self.batch_size):
                batch = self.modality.collate(arrays[start : start + self.batch_size])
                chunks.append(self.head(self.encoder(batch).pooled()).argmax(dim=1))
        return torch.cat(chunks).numpy()

    def accuracy(self, values: Sequence[Any], labels: Sequence[int] | np.ndarray) -> float:
        """The fraction of ``values`` whose predicted class is their label."""
        truth = _labels(labels, len(values))
        return float((self.predict(values) == truth).mean())


def train_probe(
    modality: Modality[Any],
    train_values: Sequence[Any],
    train_labels: Sequence[int] | np.ndarray,
    *,
    epochs: int,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    threads: int | None = 1,
    n_classes: int | None = None,
) -> Probe:
    """Train ``modality.build_encoder()`` + ``nn.Linear(encoder.output_size, n_classes)``.

    Args:
        modality: a modality instance; it is ``fit`` on ``train_values`` first, as the
            trainer fits it on the training split.
        train_values: raw, present values (what a data column holds).
        train_labels: a class index in ``[0, n_classes)`` for each value.
        epochs: passes over the training values, each in a fresh shuffled order.
        batch_size: values per optimiser step (the last batch of an epoch may be smaller).
        lr: Adam's learning rate.
        seed: seeds the weights, dropout and the shuffling; the caller's torch random state
            is left as it was.
        threads: torch's thread count while training and predicting, restored afterwards
            (``None``: leave it). Models this small run fastest on one thread, and on busy
            shared cores torch's default pool made such tests 6-10x slower.
        n_classes: the head's output size; default ``max(train_labels) + 1``.

    Raises ``ValueError`` for no values, labels that do not match them, or a value the
    modality cannot preprocess (naming its index).
    """
    import torch
    from torch import nn

    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    labels = _labels(train_labels, len(train_values))
    classes = int(labels.max()) + 1 if n_classes is None else n_classes
    if labels.max() >= classes:
        raise ValueError(f"label {labels.max()} is out of range for n_classes={classes}")
    modality.fit(train_values)
    arrays = _preprocess(modality, train_values, "training value")
    targets = torch.from_numpy(labels)
    shuffle = np.random.default_rng(seed)
    with _threads(threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = modality.build_encoder()
        head = nn.Linear(encoder.output_size, classes)
        probe = Probe(modality, encoder, head, batch_size, threads)
        optimizer = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=lr)
        encoder.train()
        head.train()
        for _ in range(epochs):
            total = 0.0
            order = shuffle.permutation(len(arrays))
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                batch = modality.collate([arrays[i] for i in idx])
                logits = head(encoder(batch).pooled())
                loss = nn.functional.cross_entropy(logits, targets[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                probe.step_losses.append(loss.item())
                total += loss.item() * len(idx)
            probe.losses.append(total / len(order))
    return probe


@contextmanager
def _threads(count: int | None) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _labels(labels: Sequence[int] | np.ndarray, count: int) -> np.ndarray:
    array = np.asarray(labels)
    if count == 0:
        raise ValueError("no values given")
    if array.shape != (count,) or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"expected {count} integer class labels (one per value), got an array of dtype "
            f"{array.dtype} and shape {array.shape}"
        )
    if array.min() < 0:
        raise ValueError(f"class labels must be >= 0, got {array.min()}")
    return array.astype(np.int64)


def _preprocess(modality: Modality[Any], values: Sequence[Any], what: str) -> list[np.ndarray]:
    arrays = []
    for i, value in enumerate(values):
        try:
            arrays.append(modality.preprocess(value))
        except ValueError as exc:
            raise ValueError(f"{what} {i} of {modality.name!r}: {exc}") from None
    return arrays
