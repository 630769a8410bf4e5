"""Collation: helpers shared by modality plugins (padding, masks, missing samples) and
:func:`collate_batch`, the one place where rows of preprocessed arrays become a
:class:`~mmcore.batch.Batch` (the training loader, the streaming loader, prediction and
serving all call it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from mmcore.batch import Batch, ModalityBatch

if TYPE_CHECKING:
    from mmcore.modality import Modality


def collate_batch(
    modalities: Mapping[str, Modality],
    inputs: Mapping[str, Sequence[np.ndarray | None]],
    targets: Mapping[str, Sequence[np.ndarray]] | None = None,
    index: Sequence[int] | np.ndarray | None = None,
) -> Batch:
    """``B`` rows of preprocessed arrays -> one :class:`~mmcore.batch.Batch`.

    Args:
        modalities: name -> modality; every one is collated, in this order, by its
            :meth:`~mmcore.modality.Modality.collate`.
        inputs: modality name -> one array per row, ``None`` where the row lacks the
            modality (``present=False`` in its batch); a key for every modality.
        targets: head name -> one encoded target per row (never ``None``: a row without its
            target is a bad row, left out before this), stacked into a ``[B, ...]`` tensor.
            Heads left out have no targets in the batch (prediction).
        index: each row's index in its split, as an int64 ``[B]`` tensor (``None``: none).
    """
    collated = {name: modality.collate(inputs[name]) for name, modality in modalities.items()}
    stacked = {name: torch.from_numpy(np.stack(rows)) for name, rows in (targets or {}).items()}
    # a copy: an index read from Arrow may be a read-only view, which torch warns about
    rows = None if index is None else torch.from_numpy(np.array(index, dtype=np.int64))
    return Batch(inputs=collated, targets=stacked, index=rows)


def _template(items: Sequence[np.ndarray | None], what: str) -> np.ndarray:
    for item in items:
        if item is not None:
            return item
    raise ValueError(f"cannot collate a batch in which every sample lacks the {what}")


def pad_sequences(
    items: Sequence[np.ndarray | None],
    *,
    empty_shape: tuple[int, ...] | None = None,
    dtype: torch.dtype | None = None,
    pad_value: float = 0.0,
) -> ModalityBatch:
    """Stack variable-length ``[T_i, ...]`` arrays into ``[B, T_max, ...]`` with a step mask.

    ``None`` items (missing modality) become all-padding rows with ``present=False``.
    ``empty_shape`` gives the trailing shape to use when every item is missing.
    """
    present = torch.tensor([item is not None for item in items], dtype=torch.bool)
    if present.any():
        template = _template(items, "modality")
        trailing = template.shape[1:]
        np_dtype = template.dtype
    elif empty_shape is not None:
        trailing, np_dtype = tuple(empty_shape), np.dtype(np.float32)
    else:
        raise ValueError("pad_sequences: every item is missing and no empty_shape was given")
    for i, item in enumerate(items):
        if item is not None and item.shape[1:] != trailing:
            raise ValueError(
                f"sample {i} has steps of shape {item.shape[1:]}, expected {trailing} "
                "like the batch's first present sample"
            )
    lengths = [0 if item is None else int(item.shape[0]) for item in items]
    t_max = max(max(lengths), 1)
    out = np.full((len(items), t_max, *trailing), pad_value, dtype=np_dtype)
    for i, item in enumerate(items):
        if item is not None:
            out[i, : lengths[i]] = item
    values = torch.from_numpy(out)
    if dtype is not None and values.dtype != dtype:  # .to() of its own dtype: a no-op call
        values = values.to(dtype)
    steps = torch.arange(t_max).unsqueeze(0)
    mask = steps < torch.tensor(lengths).unsqueeze(1)
    full = all(n == t_max for n in lengths)  # every sample present and as long as the longest
    return ModalityBatch(values=values, present=present, mask=mask, full=full)


def stack_fixed(
    items: Sequence[np.ndarray | None],
    *,
    shape: tuple[int, ...] | None = None,
    dtype: torch.dtype | None = None,
) -> ModalityBatch:
    """Stack same-shape arrays into ``[B, ...]``; missing items become zeros, ``present=False``.

    ``shape`` is the per-sample shape when it is known up front (needed if all are missing).
    """
    present = torch.tensor([item is not None for item in items], dtype=torch.bool)
    if shape is None:
        shape = _template(items, "modality").shape
    first = next((item for item in items if item is not None), None)
    np_dtype = first.dtype if first is not None else np.float32
    out = np.zeros((len(items), *shape), dtype=np_dtype)
    for i, item in enumerate(items):
        if item is not None:
            if item.shape != tuple(shape):
                raise ValueError(f"sample {i} has shape {item.shape}, expected {tuple(shape)}")
            out[i] = item
    values = torch.from_numpy(out)
    if dtype is not None and values.dtype != dtype:  # .to() of its own dtype: a no-op call
        values = values.to(dtype)
    full = all(item is not None for item in items)
    return ModalityBatch(values=values, present=present, full=full)


def limit_length(seq: np.ndarray, max_length: int | None, truncate: bool) -> np.ndarray:
    """``seq [T, ...]`` checked to have at least one step and at most ``max_length``.

    A longer sequence is cut to its first ``max_length`` steps when ``truncate`` is true and
    is an error otherwise, so nothing is dropped without an option saying so.
    """
    if seq.ndim == 0 or seq.shape[0] == 0:
        raise ValueError("empty sequence: expected at least one time step")
    if max_length is not None and seq.shape[0] > max_length:
        if not truncate:
            raise ValueError(
                f"sequence has {seq.shape[0]} steps, more than max_length={max_length}; "
                "set truncate=True to keep only the first max_length steps"
            )
        seq = seq[:max_length]
    return seq


def stacked_sequences(values: np.ndarray, *, dtype: torch.dtype | None = None) -> ModalityBatch:
    """``values [B, T, ...]``, every sample present and ``T >= 1`` steps long -> the batch
    :func:`pad_sequences` gives for the same samples (nothing to pad: the mask is all true),
    without per-sample work."""
    if values.ndim < 2 or values.shape[1] == 0:
        return pad_sequences(list(values), dtype=dtype)
    tensor = torch.from_numpy(np.ascontiguousarray(values))
    if dtype is not None and tensor.dtype != dtype:
        tensor = tensor.to(dtype)
    b, t = values.shape[:2]
    return ModalityBatch(values=tensor, present=torch.ones(b, dtype=torch.bool),
                         mask=torch.ones(b, t, dtype=torch.bool), full=True)


def stacked_fixed(values: np.ndarray, *, dtype: torch.dtype | None = None) -> ModalityBatch:
    """``values [B, ...]``, every sample present -> the batch :func:`stack_fixed` gives."""
    tensor = torch.from_numpy(np.ascontiguousarray(values))
    if dtype is not None and tensor.dtype != dtype:
        tensor = tensor.to(dtype)
    return ModalityBatch(values=tensor, present=torch.ones(len(values), dtype=torch.bool),
                         full=True)
