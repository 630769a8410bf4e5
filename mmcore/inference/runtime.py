"""Run an exported bundle (``mmcore export``): rows -> preprocess -> collate -> graph -> heads.

``mmcore.inference.runtime.load(BUNDLE)`` gives a :class:`Runtime` whose :meth:`~Runtime.predict`
returns what :meth:`mmcore.inference.predictor.Predictor.predict` returns for the same rows,
without the trainer, the data layer or the model's Python code: the modality plugins do the
preprocessing (they must be installed, at the major versions the bundle records), the
heads' ``predict`` turns raw outputs into labels, and the graph runs on onnxruntime
(``pip install 'mmcore-torch[export]'``).

Loading checks the manifest against its schema and every file against the manifest's
SHA-256 (``sha256=`` pins the manifest itself: the bundle digest ``mmcore export`` prints),
and reads only JSON, the ONNX graph and the plugins' own state files: nothing from the bundle
is executed. A
``torch-export`` bundle (``model.pt2``) is the exception: torch can unpickle objects while
loading it, so it is loaded only with ``trust_code=True``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmcore.batch import ModalityBatch
from mmcore.errors import CheckpointError, DataError, PluginError, SpecError
from mmcore.head import Head
from mmcore.inference.export.graph_file import GraphFn, load_graph
from mmcore.inference.export.manifest import BATCH_AXIS, MANIFEST, read_bundle
from mmcore.modality import Modality, new_modality
from mmcore.plugins.default import get_registry
from mmcore.plugins.registry import Registry
from mmcore.plugins.versions import check_plugin_versions
from mmcore.rows import for_rows, row_batches
from mmcore.spec.options import implementation_model, keyword_arguments, validated
from mmcore.version import DISTRIBUTION, with_core_distribution

#: rows per graph call in :meth:`Runtime.predict`
PREDICT_BATCH = 256


class Runtime:
    """A loaded bundle.

    Attributes:
        bundle: the bundle folder.
        manifest: its ``manifest.json``.
        digest: the bundle digest (the SHA-256 of ``manifest.json``).
        modalities: the modalities with their fitted state (they preprocess and collate).
        heads: the heads (their ``predict`` formats the graph's raw outputs).
        allow_missing: whether a row may lack some modalities (``data.allow_missing``).
    """

    def __init__(self, bundle: Path, manifest: dict[str, Any], modalities: dict[str, Modality],
                 heads: dict[str, Head], graph: GraphFn, digest: str | None = None) -> None:
        self.bundle = bundle
        self.manifest = manifest
        #: the bundle digest: the SHA-256 of its manifest.json
        self.digest = digest
        self.modalities = modalities
        self.heads = heads
        self.allow_missing = bool(manifest.get("allow_missing", False))
        self._graph = graph
        self._inputs = manifest["inputs"]

    # -- running ----------------------------------------------------------------------------
    def run(self, inputs: Mapping[str, ModalityBatch]) -> dict[str, np.ndarray]:
        """Collated batches -> each head's raw output (what the model's forward returns)."""
        arrays = []
        for spec in self._inputs:
            batch = inputs[spec["modality"]]
            tensor = batch.extra[spec["key"]] if spec["key"] else getattr(batch, spec["field"])
            if tensor is None:
                raise DataError(f"modality {spec['modality']!r}: the batch has no "
                                f"{spec['field']}, which the graph takes")
            arrays.append(self._fit_steps(spec, tensor.numpy()))
        return dict(zip(self.manifest["outputs"], self._graph(arrays), strict=True))

    def _fit_steps(self, spec: Mapping[str, Any], array: np.ndarray) -> np.ndarray:
        """A time axis the graph fixed (``torch-export``) gets padding up to its length."""
        shape = spec["shape"]
        if len(shape) < 2 or not isinstance(shape[1], int) or spec["field"] not in (
                "values", "mask") or shape[1] == array.shape[1]:
            return array
        if array.shape[1] > shape[1]:
            raise DataError(
                f"modality {spec['modality']!r}: {array.shape[1]} steps, more than the "
                f"{shape[1]} this torch-export graph was traced with; export with "
                "--format onnx (dynamic time axes) or trace on longer rows (--data)"
            )
        pad = [(0, 0)] * array.ndim
        pad[1] = (0, shape[1] - array.shape[1])
        return np.pad(array, pad)

    def predict(
        self,
        rows: Sequence[Mapping[str, Any]],
        *,
        root: str | Path | None = None,
        batch_size: int = PREDICT_BATCH,
    ) -> list[dict[str, Any]]:
        """One dict per row: head name -> that head's prediction, as
        :meth:`mmcore.inference.predict.Predictor.predict` gives it. Relative file paths in the rows
        resolve against ``root`` (default: the working directory). A bad value raises
        :class:`DataError` naming the row and column, worded as ``predict`` words it."""
        rows = list(rows)
        out: list[dict[str, Any]] = []
        modalities = for_rows(self.modalities, rows, root)
        for batch in row_batches(modalities, rows, allow_missing=self.allow_missing,
                                 batch_size=batch_size):
            raw = self.run(batch.inputs)
            per_head = {name: head.predict(torch.from_numpy(raw[name]))
                        for name, head in self.heads.items()}
            out += [{name: preds[i] for name, preds in per_head.items()}
                    for i in range(len(batch))]
        return out

    def metadata(self) -> dict[str, Any]:
        """What a client needs to know: the modalities and their columns, the heads and
        their targets (and classes), the graph's inputs, versions and export parity."""
        m = self.manifest
        heads = {}
        for name, head in m["heads"].items():
            entry = {"kind": head["kind"], "target": head["target"]}
            if "classes" in head["options"]:
                entry["classes"] = head["options"]["classes"]
            heads[name] = entry
        return {
            "modalities": {name: {"plugin": mod["plugin"], "columns": mod["columns"]}
                           for name, mod in m["modalities"].items()},
            "heads": heads,
            "allow_missing": self.allow_missing,
            "graph": m["graph"],
            "inputs": m["inputs"],
            "versions": {DISTRIBUTION: m["mmcore"], "torch": m["torch"],
                         **with_core_distribution(m["plugins"])},
            "parity": m["parity"],
            "sha256": self.digest,
        }


def load(
    bundle: str | Path,
    *,
    trust_code: bool = False,
    registry: Registry | None = None,
    threads: int | None = None,
    sha256: str | None = None,
) -> Runtime:
    """Load an export bundle. Raises :class:`CheckpointError` when the manifest is malformed
    (one line per field) or, with ``sha256``, is not the pinned one (the digest ``mmcore
    export`` prints), a file is missing, changed or a link, a plugin is missing or at another
    major version, or (without ``trust_code``) the graph is a ``torch-export`` program.
    ``threads``: onnxruntime's intra-op threads (default: its own choice)."""
    bundle = Path(bundle)
    manifest, digest = read_bundle(bundle, sha256=sha256)
    registry = registry or get_registry()
    kind = manifest["graph"]["kind"]
    if kind == "torch-export" and not trust_code:
        raise CheckpointError(
            f"{bundle / manifest['graph']['file']}: a torch-export program can unpickle "
            "objects while loading; load it only if you trust the bundle (trust_code=True, "
            "--trust-code), or export with --format onnx"
        )
    check_plugin_versions(manifest["plugins"], bundle / MANIFEST, registry)
    try:
        modalities = _modalities(bundle, manifest, registry)
        heads = _heads(manifest, registry)
    except (PluginError, SpecError) as exc:
        raise CheckpointError(f"{bundle}: {exc}") from None
    except (ValueError, TypeError, OSError, RuntimeError, DataError) as exc:
        raise CheckpointError(f"{bundle}: cannot restore what {MANIFEST} describes: "
                              f"{type(exc).__name__}: {exc}") from None
    graph = load_graph(bundle / manifest["graph"]["file"], kind, threads=threads,
                       inputs=[i["name"] for i in manifest["inputs"]],
                       outputs=len(manifest["outputs"]))
    if manifest["inputs"][0]["shape"][0] != BATCH_AXIS:
        raise CheckpointError(f"{bundle}: the graph's first input has no batch axis")
    return Runtime(bundle, manifest, modalities, heads, graph, digest)


def _modalities(bundle: Path, manifest: Mapping[str, Any],
                registry: Registry) -> dict[str, Modality]:
    out: dict[str, Modality] = {}
    source = str(bundle / "manifest.json")
    for name, spec in manifest["modalities"].items():
        reg = registry.get("modality", spec["plugin"])
        cls = reg.load()
        options = validated(implementation_model(reg, cls), spec["options"], source=source,
                            path=f"modalities.{name}.options")
        modality = new_modality(cls, name, options, columns=spec["columns"])
        modality.load_state(bundle / spec["state"])
        out[name] = modality
    return out


def _heads(manifest: Mapping[str, Any], registry: Registry) -> dict[str, Head]:
    out: dict[str, Head] = {}
    for name, spec in manifest["heads"].items():
        reg = registry.get("head", spec["kind"])
        cls = reg.load()
        options = validated(implementation_model(reg, cls), spec["options"],
                            source="manifest.json", path=f"heads.{name}.options")
        out[name] = cls(spec["input_size"], spec["target"], **keyword_arguments(options))
    return out
