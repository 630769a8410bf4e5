"""Training curves and confusion matrices as PNGs, when matplotlib is installed
(``pip install mmcore-torch[plots]``). Uses matplotlib's object API, never pyplot's global state."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mmcore.metrics import confusion_matrix

CURVES = "training_curves.png"
MISSING_NOTE = "matplotlib is not installed: no plots (pip install 'mmcore-torch[plots]')"
#: above this many classes a confusion matrix is drawn without per-cell numbers
ANNOTATE_MAX = 20


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


def make_plots(
    run_dir: Path, history: Sequence[Mapping[str, Any]], model: Any, results: Mapping[str, Any]
) -> str | None:
    """Write ``training_curves.png`` and ``confusion_<head>.png`` (for single-label
    classification heads, on the test split, else validation). Returns a note when
    matplotlib is missing, else ``None``."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return MISSING_NOTE
    if history:
        plot_curves(history, run_dir / CURVES)
    split = "test" if "test" in results else "validation" if "validation" in results else None
    if split is None:
        return None
    result = results[split]
    for name, head in model.heads.items():
        if getattr(head, "categorical", False) and name in result.outputs:
            matrix = confusion_matrix(
                result.outputs[name].argmax(-1), result.targets[name], len(head.classes)
            )
            plot_confusion(
                matrix.numpy(), head.classes, f"{name} ({split})", run_dir / f"confusion_{name}.png"
            )
    return None
