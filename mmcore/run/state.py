"""Nested training state (optimizer, scheduler, RNG) as safetensors tensors plus JSON.

Nothing here pickles: a state dict is split into its tensors, saved with safetensors, and a
JSON skeleton that records where each tensor goes and which containers were dicts with
non-string keys or tuples, so :func:`unflatten` rebuilds exactly what :func:`flatten` took.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch import Tensor

_TENSOR = "__tensor__"
_TUPLE = "__tuple__"
_DICT = "__dict__"
_NDARRAY = "__ndarray__"


def flatten(obj: Any, prefix: str, tensors: dict[str, Tensor]) -> Any:
    """A JSON-ready skeleton of ``obj``; its tensors go into ``tensors`` under ``prefix/...``.

    Supports dicts (any JSON-scalar keys), lists, tuples, tensors, numpy arrays and JSON
    scalars (floats may be ``inf``/``nan``). Raises ``TypeError`` naming the path of anything
    else, rather than silently dropping it.
    """
    if isinstance(obj, Tensor):
        key = prefix
        tensors[key] = obj.detach().to("cpu", copy=True).contiguous()
        return {_TENSOR: key}
    if isinstance(obj, np.ndarray):
        key = prefix
        tensors[key] = torch.from_numpy(np.ascontiguousarray(obj).copy())
        return {_NDARRAY: key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and not any(
            k in (_TENSOR, _TUPLE, _DICT, _NDARRAY) for k in obj
        ):
            return {k: flatten(v, f"{prefix}/{k}", tensors) for k, v in obj.items()}
        items = []
        for k, v in obj.items():
            if not isinstance(k, str | int | float | bool) and k is not None:
                raise TypeError(f"{prefix}: dict key {k!r} is not a JSON scalar")
            items.append([k, flatten(v, f"{prefix}/{k}", tensors)])
        return {_DICT: items}
    if isinstance(obj, tuple):
        return {_TUPLE: [flatten(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [flatten(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    raise TypeError(f"{prefix}: cannot store a {type(obj).__name__} in a checkpoint")


def unflatten(skeleton: Any, tensors: dict[str, Tensor]) -> Any:
    """The inverse of :func:`flatten`. Raises ``KeyError`` naming a missing tensor."""
    if isinstance(skeleton, dict):
        if _TENSOR in skeleton:
            return tensors[skeleton[_TENSOR]]
        if _NDARRAY in skeleton:
            return tensors[skeleton[_NDARRAY]].numpy()
        if _TUPLE in skeleton:
            return tuple(unflatten(v, tensors) for v in skeleton[_TUPLE])
        if _DICT in skeleton:
            return {k: unflatten(v, tensors) for k, v in skeleton[_DICT]}
        return {k: unflatten(v, tensors) for k, v in skeleton.items()}
    if isinstance(skeleton, list):
        return [unflatten(v, tensors) for v in skeleton]
    return skeleton


def capture_rng() -> dict[str, Any]:
    """Every global random state training touches: Python, numpy, torch CPU and CUDA."""
    np_state = np.random.get_state(legacy=True)
    assert isinstance(np_state, tuple)  # legacy=True: the global MT19937's state as a tuple
    version, words, gauss = random.getstate()
    state: dict[str, Any] = {
        # the Mersenne Twister's 625 words as one array (a tensor in the checkpoint), not 625
        # JSON numbers
        "python": {"version": version, "words": np.asarray(words, dtype=np.int64),
                   "gauss": gauss},
        "numpy": {
            "kind": np_state[0],
            "keys": np.asarray(np_state[1], dtype=np.int64),  # safetensors has no uint32 everywhere
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Put back what :func:`capture_rng` took (CUDA states only when CUDA is in use)."""
    python = state["python"]
    if isinstance(python, dict):
        random.setstate((python["version"], tuple(int(w) for w in python["words"]),
                         python["gauss"]))
    else:  # checkpoints written before 2026-12-06: getstate()'s tuples as nested lists
        random.setstate(_to_tuples(python))
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np.asarray(np_state["keys"], dtype=np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"].to(torch.uint8))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.to(torch.uint8) for t in cuda])


def _to_tuples(value: Any) -> Any:
    # random.setstate wants the exact nested-tuple shape getstate gave.
    if isinstance(value, list):
        return tuple(_to_tuples(v) for v in value)
    return value
