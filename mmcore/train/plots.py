"""The run's pictures: training curves and confusion matrices as PNGs in the run folder,
drawn from what the folder keeps (``metrics.jsonl``, and ``confusion.json``, which the final
evaluation writes), so that they cost a run nothing until someone wants them: ``mmcore plots
RUN`` (or :func:`draw_run`) draws them at any time, the ``plots`` callback at the end of
``fit()``. Needs matplotlib (``pip install mmcore-torch[plots]``); uses matplotlib's object API
on the Agg canvas, never pyplot's global state."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmcore.errors import MmcoreError
from mmcore.run.files import CONFUSION, METRICS_JSON, METRICS_JSONL

CURVES = "training_curves.png"
MISSING_NOTE = "matplotlib is not installed: no plots (pip install 'mmcore-torch[plots]')"
#: above this many classes a confusion matrix is drawn without per-cell numbers
ANNOTATE_MAX = 20


class PlotsUnavailable(MmcoreError):
    """The pictures cannot be drawn: no matplotlib, or no run folder to draw from."""


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def plot_curves(history: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Loss per epoch (train and validation) and every validation metric, one panel each."""
    from matplotlib.ticker import MaxNLocator
    epochs = [r["epoch"] for r in history]
    metric_keys = sorted(
        {k for r in history for k in r if k.startswith("validation/") and not k.endswith("loss")}
    )
    panels = 1 + len(metric_keys)
    fig = _figure(5 * min(panels, 3), 3.5 * ((panels + 2) // 3))
    ax = fig.add_subplot((panels + 2) // 3, min(panels, 3), 1)
    for key in ("train/loss", "validation/loss"):
        if any(key in r for r in history):
            ax.plot(epochs, [r.get(key, float("nan")) for r in history], marker="o", label=key)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("loss")
    ax.legend()
    for i, key in enumerate(metric_keys, start=2):
        ax = fig.add_subplot((panels + 2) // 3, min(panels, 3), i)
        ax.plot(epochs, [r.get(key, float("nan")) for r in history], marker="o")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(key)
    fig.tight_layout()
    fig.savefig(path)


def plot_confusion(matrix: Any, classes: Sequence[Any], title: str, path: Path) -> None:
    """A confusion matrix (rows: true class, columns: predicted)."""
    n = len(classes)
    size = max(4.0, min(0.45 * n + 2, 16.0))
    fig = _figure(size, size)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046)
    labels = [str(c) for c in classes]
    ax.set_xticks(range(n), labels, rotation=90 if n > 8 else 0)
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= ANNOTATE_MAX:
        peak = max(int(matrix.max()), 1)
        for r in range(n):
            for c in range(n):
                value = int(matrix[r, c])
                ax.text(c, r, str(value), ha="center", va="center", fontsize=8,
                        color="white" if value > peak / 2 else "black")
    fig.tight_layout()
    fig.savefig(path)


def confusion_matrices(model: Any, results: Mapping[str, Any]) -> dict[str, Any] | None:
    """What ``confusion.json`` holds: ``{"split", "heads": {head: {"classes", "counts"}}}``
    for each single-label classification head on the test split (else validation), counts
    with rows the true class and columns the predicted one; ``None`` when there is none."""
    split = "test" if "test" in results else "validation" if "validation" in results else None
    if split is None:
        return None
    from mmcore.metrics import confusion_matrix

    result, heads = results[split], {}
    for name, head in model.heads.items():
        if getattr(head, "categorical", False) and name in result.outputs:
            matrix = confusion_matrix(
                result.outputs[name].argmax(-1), result.targets[name], len(head.classes))
            heads[name] = {"classes": list(head.classes), "counts": matrix.tolist()}
    return {"split": split, "heads": heads} if heads else None


def draw_run(run_dir: str | Path) -> list[Path]:
    """Draw ``training_curves.png`` from the run's ``metrics.jsonl`` and, once the run has
    finished (``metrics.json``), ``confusion_<head>.png`` from its ``confusion.json``;
    returns the files written. Raises :class:`PlotsUnavailable` without matplotlib or
    without ``metrics.jsonl``."""
    run = Path(run_dir)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotsUnavailable(MISSING_NOTE) from None
    if not (run / METRICS_JSONL).is_file():
        raise PlotsUnavailable(f"{run}: no {METRICS_JSONL} (not a run folder, or no epoch has "
                               "finished yet): nothing to draw")
    history = [json.loads(line) for line in
               (run / METRICS_JSONL).read_text(encoding="utf-8").splitlines() if line.strip()]
    written = []
    if history:
        plot_curves(history, run / CURVES)
        written.append(run / CURVES)
    found = run / CONFUSION
    # the final evaluation writes (or removes) confusion.json before metrics.json: with
    # metrics.json there it is this run's, not one left by a run the folder held before
    if found.is_file() and (run / METRICS_JSON).is_file():
        confusion = json.loads(found.read_text(encoding="utf-8"))
        split = confusion["split"]
        for name, head in confusion["heads"].items():
            path = run / f"confusion_{name}.png"
            plot_confusion(np.asarray(head["counts"]), head["classes"], f"{name} ({split})",
                           path)
            written.append(path)
    return written
