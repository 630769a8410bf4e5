"""``mmcore export``: a trained run folder -> an inference bundle (see :mod:`.manifest`).

The graph is traced from a batch of the run's own data (or ``data=``), under
:func:`mmcore.layers.masked_rnns` (no packing) with batches marked not-full (encoders take
their masked path), so one graph serves every batch. Before the bundle is written, the
graph is run on that batch, on it with each modality hidden, and on a one-row batch, and its
outputs are compared with the eager model's: a graph off by more than ``tolerance`` is an
:class:`ExportError` and nothing is written.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mmcore.batch import ModalityBatch
from mmcore.inference.export.graph import GraphModel, InputLayout
from mmcore.inference.export.manifest import (
    FORMAT,
    GRAPH_FILES,
    MANIFEST,
    checksums,
)
from mmcore.inference.export.writers import (  # noqa: F401 - ExportError re-exported
    ExportError,
    _export_onnx,
    _export_program,
    rnn_decompositions,
)
from mmcore.layers import masked_rnns
from mmcore.run.card import CARD, bundle_card
from mmcore.version import __version__

#: largest allowed difference between the exported graph's outputs and the eager model's
TOLERANCE = 1e-4
#: rows of the batch the graph is traced and checked on
EXAMPLE_ROWS = 8
#: rows scanned for the longest sequence a ``torch-export`` graph is traced with
SCANNED_ROWS = 1024
#: the fewest steps a sequence of the example batch gets (padding added): a size-1 axis would
#: be taken for a constant by the exporter
MIN_STEPS = 2


def export_run(
    run_dir: str | Path,
    output: str | Path,
    *,
    format: str = "onnx",
    data: str | Path | None = None,
    trust_code: bool = False,
    overwrite: bool = False,
    tolerance: float = TOLERANCE,
) -> Path:
    """Export a trained run folder to ``output`` and return its path.

    ``format`` is ``"onnx"`` (dynamic batch and time axes; loads without running code) or
    ``"torch-export"`` (a ``torch.export`` program, ``model.pt2``, dynamic axes where the
    model allows them; an axis it fixes is traced at the longest of the first
    :data:`SCANNED_ROWS` rows; loading a ``.pt2`` can unpickle, so :mod:`mmcore.inference.runtime`
    needs ``trust_code=True`` for it). ``data`` is a file
    of rows to trace on (default: the run's test or validation split). ``trust_code`` is
    :func:`mmcore.load`'s, for runs whose fusion is defined in their spec file.
    """
    from mmcore.inference.predict import load  # here: importing the runtime imports this package

    if format not in GRAPH_FILES:
        raise ExportError(f"unknown format {format!r}: expected one of {', '.join(GRAPH_FILES)}")
    output = Path(output)
    if output.exists() and not (overwrite and (output / MANIFEST).is_file()):
        raise ExportError(
            f"{output} already exists; choose a new folder"
            + (" or pass --overwrite" if (output / MANIFEST).is_file() else "")
        )
    predictor = load(run_dir, device="cpu", trust_code=trust_code)
    model = predictor.model.eval()
    example = _example_batch(predictor, data, longest=format == "torch-export")
    layout = InputLayout.of(example)
    graph = GraphModel(model, layout).eval()
    tmp = output.with_name(f".tmp-{output.name}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        graph_file = tmp / GRAPH_FILES[format]
        with masked_rnns(), rnn_decompositions(), torch.no_grad():
            if format == "onnx":
                shapes = _export_onnx(graph, layout, example, graph_file)
            else:
                shapes = _export_program(graph, layout, example, graph_file)
        inputs = _inputs(layout, shapes)
        parity = _check_parity(graph_file, format, graph, layout, example, inputs, tolerance)
        shutil.copyfile(Path(run_dir) / "spec.json", tmp / "spec.json")
        for name in predictor.modalities:
            state = Path(run_dir) / "modalities" / name
            target = tmp / "modalities" / name
            if state.is_dir():
                shutil.copytree(state, target)
            else:
                target.mkdir(parents=True)
        (tmp / CARD).write_text(bundle_card(run_dir, format, GRAPH_FILES[format]),
                                encoding="utf-8")  # before the checksums, which cover it
        manifest = _manifest(predictor, graph, inputs, format, parity)
        manifest["files"] = checksums(tmp)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if output.exists():
            shutil.rmtree(output)
        tmp.rename(output)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    record_export(Path(run_dir), output, format)
    return output


def record_export(run_dir: Path, bundle: Path, format: str) -> None:
    """Add the bundle's digest to the run folder's ``exports.json`` (a list, newest last), so
    a bundle found later can be checked against the run it came from. An unreadable list is
    replaced (it is a record, read as data, never code)."""
    import datetime as dt

    from mmcore.inference.export.manifest import bundle_digest
    from mmcore.run.atomic import atomic_write_json
    from mmcore.run.layout import EXPORTS

    path = run_dir / EXPORTS
    try:
        entries = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    except (OSError, ValueError):
        entries = []
    if not isinstance(entries, list):
        entries = []
    entries.append({"bundle": str(bundle.resolve()), "sha256": bundle_digest(bundle),
                    "format": format,
                    "exported": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})
    atomic_write_json(path, entries)


# -- the example batch -------------------------------------------------------------------
def _example_batch(predictor: Any, data: str | Path | None,
                   longest: bool) -> dict[str, ModalityBatch]:
    """The first rows of the split, each sequence padded to at least :data:`MIN_STEPS` steps
    or, with ``longest``, to the most steps any of the first :data:`SCANNED_ROWS` rows has.

    The exporters take two axes of equal size for one ("duck sizing"), so the number of
    rows and each modality's steps are moved off every other size of the batch: a time axis
    of 2 beside two coordinates per point would otherwise come out fixed at 2."""
    dm, split = predictor._split(None, data)

    def first(rows: int) -> Any:
        batches = iter(dm.loader(split, batch_size=rows, shuffle=False, num_workers=0))
        return next(batches, None), batches

    batch, batches = first(EXAMPLE_ROWS)
    if batch is None:
        raise ExportError(f"split {split!r} has no rows to trace the graph on; give --data")
    steps = {name: MIN_STEPS for name, mb in batch.inputs.items() if mb.mask is not None}
    seen = [batch]
    if longest:
        seen += [b for _, b in zip(range(SCANNED_ROWS // EXAMPLE_ROWS), batches, strict=False)]
    for b in seen:
        for name in steps:
            steps[name] = max(steps[name], b.inputs[name].mask.shape[1])
    used = {int(n) for name, mb in batch.inputs.items()
            for t in (mb.values, *mb.extra.values())
            for n in t.shape[(2 if name in steps and t is mb.values else 1):]}
    rows = len(batch)
    while rows in used and rows > 1:
        rows -= 1  # fewer rows than the split gave, so that they exist
    if rows != len(batch):
        batch = first(rows)[0]
    used.add(rows)
    for name in sorted(steps):
        while steps[name] in used:
            steps[name] += 1
        used.add(steps[name])
    return {name: pad_steps(mb, steps.get(name, 0)) for name, mb in batch.inputs.items()}


def pad_steps(batch: ModalityBatch, steps: int) -> ModalityBatch:
    """``batch`` with its time axis padded to at least ``steps`` (padding is masked out, so
    outputs do not change); a batch without a mask is returned as it is."""
    if batch.mask is None or batch.mask.shape[1] >= steps:
        return batch
    extra = steps - batch.mask.shape[1]
    values = torch.nn.functional.pad(
        batch.values, (0, 0) * (batch.values.dim() - 2) + (0, extra)
    )
    mask = torch.nn.functional.pad(batch.mask, (0, extra), value=False)
    return ModalityBatch(values, batch.present, mask, dict(batch.extra), full=False)


def _check_parity(path: Path, format: str, graph: GraphModel, layout: InputLayout,
                  example: Mapping[str, ModalityBatch], inputs: list[dict[str, Any]],
                  tolerance: float) -> dict[str, Any]:
    from mmcore.evaluate.masking import hide_all
    from mmcore.inference.export.graph_file import load_graph

    run = load_graph(path, format)
    cases = {"example": dict(example)}
    if len(example) > 1:
        cases.update({f"without {m}": hide_all(example, {m}) for m in example})
    cases["one row"] = {m: _rows(mb, slice(0, 1)) for m, mb in example.items()}
    dynamic = {i["modality"] for i in inputs if len(i["shape"]) > 1
               and not isinstance(i["shape"][1], int)}
    # every dynamic time axis longer: a graph that fixed one would fail or differ here
    cases["padded longer"] = {
        m: pad_steps(mb, mb.mask.shape[1] + 3) if m in dynamic and mb.mask is not None else mb
        for m, mb in example.items()
    }
    worst = 0.0
    for label, case in cases.items():
        args = layout.flatten(case)
        with torch.no_grad():
            eager = graph.model(case)
        try:
            got = run([a.numpy() for a in args])
        except Exception as exc:  # e.g. onnxruntime: an axis the trace fixed
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ExportError(f"the exported graph fails on the {label} batch ({first}); "
                              "nothing was written") from None
        for name, value in zip(graph.heads, got, strict=True):
            diff = float((torch.from_numpy(value) - eager[name].float()).abs().max())
            if not diff <= tolerance:  # NaN fails too
                raise ExportError(
                    f"the exported graph's head {name!r} differs from the model by {diff:.3g} "
                    f"(more than {tolerance:g}) on the {label} batch; nothing was written"
                )
            worst = max(worst, diff)
    return {"max_abs_diff": worst, "batches": list(cases), "tolerance": tolerance}


def _rows(batch: ModalityBatch, rows: slice) -> ModalityBatch:
    return ModalityBatch(
        batch.values[rows], batch.present[rows],
        None if batch.mask is None else batch.mask[rows],
        {k: v[rows] for k, v in batch.extra.items()},
    )


# -- manifest -----------------------------------------------------------------------------
def _inputs(layout: InputLayout, shapes: list[list]) -> list[dict[str, Any]]:
    """The manifest's ``inputs``: each graph input's name, source and shape (axis names for
    dynamic axes)."""
    return [{"name": slot.name, "modality": slot.modality, "field": slot.field,
             "key": slot.key, "shape": shape}
            for slot, shape in zip(layout.slots, shapes, strict=True)]


def _manifest(predictor: Any, graph: GraphModel, inputs: list[dict[str, Any]],
              format: str, parity: dict[str, Any]) -> dict[str, Any]:
    spec = predictor.spec
    model = predictor.model
    return {
        "format": FORMAT,
        "mmcore": __version__,
        "torch": torch.__version__,
        "graph": {"file": GRAPH_FILES[format], "kind": format},
        "inputs": inputs,
        "outputs": graph.heads,
        "modalities": {
            name: {"plugin": spec.modalities[name].plugin_name,
                   "columns": list(spec.modalities[name].columns),
                   "options": dict(spec.modalities[name].options),
                   "state": f"modalities/{name}"}
            for name in predictor.modalities
        },
        "heads": {
            name: {"kind": h.kind, "target": h.target, "options": dict(h.options),
                   "input_size": int(model.heads[name].input_size)}
            for name, h in spec.heads.items()
        },
        "allow_missing": bool(spec.data.allow_missing),
        "plugins": dict(spec.plugins),
        "run": str(Path(predictor.run_dir).resolve()),
        "parity": parity,
    }
