"""The exporters behind ``mmcore export``: the traced graph written as ONNX or as a
``torch.export`` program, with dynamic batch and time axes, LSTMs and GRUs as while loops, and
the exporters' own chatter kept off the user's screen. :mod:`.bundle` calls them and checks
what they wrote."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.export import Dim

from mmcore.batch import ModalityBatch
from mmcore.errors import MmcoreError
from mmcore.inference.export.graph import GraphModel, InputLayout
from mmcore.inference.export.manifest import BATCH_AXIS, time_axis


class ExportError(MmcoreError):
    """The model could not be exported, or the exported graph does not match the model."""


def _has_time(slot: Any, example: Mapping[str, ModalityBatch]) -> bool:
    return slot.field in ("values", "mask") and example[slot.modality].mask is not None


# -- exporters ----------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters print progress, log that torchvision's operators are not registered and
    warn about every LSTM's flat weights: none of it is the user's business."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._export")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


#: the recurrent operators whose export torch patches with a while-loop decomposition
_RNN_OPS = ("lstm", "gru")


@contextlib.contextmanager
def rnn_decompositions() -> Iterator[None]:
    """LSTMs and GRUs exported as while loops, so that their time axis stays dynamic (the
    default decomposition unrolls the loop, fixing the length). ``torch.onnx.export`` enters
    the same patch itself; either way the operators' dispatch caches must be cleared around
    it: torch 2.13 leaves the patched kernel cached, and a second export in the same process
    would silently fix the time axis again."""
    try:
        from torch.export import _patches
    except ImportError:  # an older torch: LSTM/GRU time axes may come out fixed (recorded)
        yield
        return

    def clear() -> None:
        for name in _RNN_OPS:
            cache = getattr(getattr(torch.ops.aten, name).input, "_dispatch_cache", None)
            if cache is not None:
                cache.clear()

    clear()
    try:
        with (_patches.register_lstm_while_loop_decomposition(),
              _patches.register_gru_while_loop_decomposition()):
            clear()
            yield
    finally:
        clear()


def _dims(layout: InputLayout, example: Mapping[str, ModalityBatch], time: Any) -> tuple:
    batch = Dim("batch", min=1, max=1 << 20)
    times: dict[str, Any] = {}
    dims = []
    for slot in layout.slots:
        d: dict[int, Any] = {0: batch}
        if time is not None and _has_time(slot, example):
            d[1] = times.setdefault(slot.modality, time(slot.modality))
        dims.append(d)
    return (tuple(dims),)


def _export_onnx(graph: GraphModel, layout: InputLayout,
                 example: Mapping[str, ModalityBatch], path: Path) -> list[list]:
    args = layout.flatten(example)
    dims = _dims(layout, example, lambda m: Dim(f"{m}_time", min=1, max=1 << 20))
    try:
        with _quiet():
            program = torch.onnx.export(
                graph, args, dynamo=True, input_names=layout.names, output_names=graph.heads,
                dynamic_shapes=dims, optimize=True,
            )
            assert program is not None  # the dynamo exporter returns its program
            program.save(str(path))
    except Exception as exc:  # the exporters raise many kinds; the first line says what
        raise ExportError(_export_failure("ONNX", exc)) from None
    return [_shape(slot, a, example) for slot, a in zip(layout.slots, args, strict=True)]


def _export_program(graph: GraphModel, layout: InputLayout,
                    example: Mapping[str, ModalityBatch], path: Path) -> list[list]:
    """A ``torch.export`` program with dynamic batch and time axes where the model allows
    them; an axis the program fixed is recorded as its size (the runtime pads to it)."""
    args = layout.flatten(example)
    dims = _dims(layout, example, lambda m: Dim.AUTO)
    try:
        with _quiet():
            program = torch.export.export(graph, args, dynamic_shapes=dims)
            torch.export.save(program, str(path))
    except Exception as exc:
        raise ExportError(_export_failure("torch.export", exc)) from None
    values = [n.meta["val"] for n in program.graph.nodes if n.op == "placeholder"][-len(args):]
    shapes = []
    for slot, arg, value in zip(layout.slots, args, values, strict=True):
        shape = _shape(slot, arg, example)
        if _has_time(slot, example) and isinstance(value.shape[1], int):
            shape[1] = arg.shape[1]
        shapes.append(shape)
    return shapes


def _shape(slot: Any, arg: Tensor, example: Mapping[str, ModalityBatch]) -> list:
    shape: list = [BATCH_AXIS, *arg.shape[1:]]
    if _has_time(slot, example):
        shape[1] = time_axis(slot.modality)
    return shape


def _export_failure(what: str, exc: Exception) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    where = next((line.strip() for line in lines if line.strip().startswith("File ")), "")
    return (f"{what} export failed: {type(exc).__name__}: {lines[0] if lines else ''}"
            + (f" ({where})" if where else "")
            + ". docs/export.md lists what an encoder must avoid (packing, boolean indexing, "
            "branches on tensor values)")


# -- parity -------------------------------------------------------------------------------
