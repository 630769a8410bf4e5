"""An exported graph file as a function of numpy arrays: ONNX on onnxruntime, a
``torch.export`` program on torch. The runtime (:mod:`mmcore.inference.runtime`) runs bundles
with it, and the export checks a new graph against the model with it, so both run a graph one
way."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from mmcore.errors import CheckpointError, PluginError

GraphFn = Callable[[Sequence[np.ndarray]], list[np.ndarray]]


def load_graph(path: Path, kind: str, *, threads: int | None = None,
               inputs: Sequence[str] | None = None, outputs: int | None = None) -> GraphFn:
    """The graph file as a function of its input arrays (in manifest order), returning the
    heads' outputs in manifest order. An ONNX graph whose input names are not ``inputs`` or
    that has not ``outputs`` outputs is a :class:`CheckpointError`."""
    if kind == "onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            raise PluginError(
                "running an ONNX bundle needs onnxruntime: pip install 'mmcore-torch[export]'"
            ) from None
        options = ort.SessionOptions()
        options.log_severity_level = 3  # no notes about shapes fixed in the trace
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(str(path), options,
                                           providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception types
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CheckpointError(f"{path}: not a graph onnxruntime can load ({first})") from None
        names = [i.name for i in session.get_inputs()]
        if inputs is not None and names != list(inputs):
            raise CheckpointError(f"{path}: the graph takes {names}, the manifest lists "
                                  f"{list(inputs)}")
        if outputs is not None and len(session.get_outputs()) != outputs:
            raise CheckpointError(f"{path}: the graph has {len(session.get_outputs())} "
                                  f"outputs, the manifest lists {outputs}")

        def run_onnx(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
            return session.run(None, dict(zip(names, arrays, strict=True)))

        return run_onnx
    if kind == "torch-export":
        module = torch.export.load(str(path)).module()

        def run_program(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
            with torch.inference_mode():
                out = module(*(torch.from_numpy(a) for a in arrays))
            return [o.numpy() for o in out]

        return run_program
    raise CheckpointError(f"{path}: unknown graph kind {kind!r}")
