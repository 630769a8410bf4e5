"""The hand-written arms of ``independent_loop.py``, sharing no code with mmcore: the data
read from the CSV with numpy and ``csv``, the model in plain ``torch.nn`` (``nn.Conv1d``,
``nn.LSTM``, ``nn.Linear``), a plain training loop, and the same model and tensors under
PyTorch Lightning. ``profile_step.py`` and ``first_step.py`` use them too."""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import benchlib

TABLE = benchlib.SHARED / "hand_gestures" / "point_history_labeled.csv"
STEPS = [f"{axis}{i}" for i in range(16) for axis in ("x", "y")]
BATCH, LR, WEIGHT_DECAY, CLIP, SEED = 32, 2e-3, 0.01, 1.0, 0


# -- the independent arm: torch only -------------------------------------------------------------
def read_table(path: Path) -> tuple[Any, Any]:
    """``(x [N, 16, 2] float32, y [N] int64)`` from the CSV, with numpy and ``csv``."""
    import numpy as np

    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    x = np.array([[float(r[c]) for c in STEPS] for r in rows], dtype=np.float32)
    y = np.array([int(r["label"]) for r in rows], dtype=np.int64)
    return x.reshape(len(rows), 16, 2), y


def hand_data(path: Path) -> dict[str, Any]:
    """Seeded 80/10/10 split; both modalities (the same trajectories) standardised per channel
    on the training rows, as mmcore's plugins do by default; every split as in-memory
    tensors."""
    import numpy as np
    import torch

    x, y = read_table(path)
    order = np.random.default_rng(SEED).permutation(len(y))
    n_val = n_test = round(0.1 * len(y))
    parts = {"validation": order[:n_val], "test": order[n_val:n_val + n_test],
             "train": order[n_val + n_test:]}
    mean = x[parts["train"]].mean(axis=(0, 1))
    std = x[parts["train"]].std(axis=(0, 1)) + 1e-8
    out = {}
    for split, idx in parts.items():
        standard = torch.from_numpy((x[idx] - mean) / std)
        out[split] = (standard, standard.clone(), torch.from_numpy(y[idx]))
    return out


def hand_model(width: int, classes: int = 4):
    """The architecture mmcore builds from the spec, in plain ``torch.nn``."""
    import torch
    from torch import nn

    class HandModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            h = width
            self.g_lstm = nn.LSTM(2, h, batch_first=True)
            self.g_proj = nn.Linear(h, h)
            self.p_conv1 = nn.Conv1d(2, h, 3, padding=1)
            self.p_conv2 = nn.Conv1d(h, h, 3, padding=1)
            self.p_lstm = nn.LSTM(h, h, batch_first=True)
            self.fusion = nn.Sequential(nn.Linear(2 * h + 2, h), nn.ReLU(), nn.Dropout(0.1),
                                        nn.Linear(h, h))
            self.head = nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Dropout(0.1),
                                      nn.Linear(h, classes))

        def forward(self, gesture, position):
            _, (last, _) = self.g_lstm(gesture)
            g = self.g_proj(last[-1])
            p = torch.relu(self.p_conv1(position.transpose(1, 2)))
            p = torch.relu(self.p_conv2(p))
            p, _ = self.p_lstm(p.transpose(1, 2))
            flags = torch.ones(g.shape[0], 2)
            return self.head(self.fusion(torch.cat([g, p.mean(dim=1), flags], dim=-1)))

    return HandModel()


def hand_accuracy(model, split) -> float:
    import torch

    g, p, y = split
    model.eval()
    with torch.no_grad():
        correct = sum(int((model(g[i:i + 256], p[i:i + 256]).argmax(-1) == y[i:i + 256]).sum())
                      for i in range(0, len(y), 256))
    model.train()
    return correct / len(y)


def run_hand(width: int, epochs: int, fused: bool = False,
             flush: bool = False) -> dict[str, float]:
    """The independent loop, whole run; ``loop_s`` / ``loop_cpu_s`` are its epochs only.
    ``fused``: torch's fused AdamW kernel, the one mmcore's optimizer uses; ``flush``:
    subnormal floats treated as zero (``torch.set_flush_denormal``), as mmcore's ``Trainer``
    does by default."""
    import torch

    torch.set_flush_denormal(flush)
    try:
        return _run_hand(width, epochs, fused)
    finally:
        torch.set_flush_denormal(False)


def _run_hand(width: int, epochs: int, fused: bool) -> dict[str, float]:
    import torch
    from torch.nn import functional as F

    start = time.perf_counter()
    data = hand_data(TABLE)
    g, p, y = data["train"]
    torch.manual_seed(SEED)
    model = hand_model(width)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY,
                                  fused=fused or None)
    walls, cpus = [], []
    model.train()
    for _ in range(epochs):
        t0, c0 = time.perf_counter(), time.process_time()
        order = torch.randperm(len(y))
        for i in range(0, len(y), BATCH):
            idx = order[i:i + BATCH]
            loss = F.cross_entropy(model(g[idx], p[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
            optimizer.step()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        hand_accuracy(model, data["validation"])
    accuracy = hand_accuracy(model, data["test"])
    return {"loop_s": sum(walls), "loop_cpu_s": sum(cpus), "rows": len(y) * epochs,
            "total_s": time.perf_counter() - start, "accuracy": accuracy,
            "params": sum(q.numel() for q in model.parameters())}


# -- the Lightning arm: the same plain model in a LightningModule -------------------------------
def run_lightning(width: int, epochs: int, work: Path, pl: Any) -> dict[str, float]:
    """PyTorch Lightning on the hand loop's model and tensors (a ``DataLoader`` over a
    ``TensorDataset``): Lightning's loop, clipping and checkpoints, validation each epoch."""
    import warnings

    import torch
    from torch.nn import functional as F
    from torch.utils.data import DataLoader, TensorDataset

    start = time.perf_counter()
    data = hand_data(TABLE)
    torch.manual_seed(SEED)
    model = hand_model(width)

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def training_step(self, batch, batch_idx):
            g, p, y = batch
            return F.cross_entropy(self.model(g, p), y)

        def validation_step(self, batch, batch_idx):
            g, p, y = batch
            self.log("val_accuracy", (self.model(g, p).argmax(-1) == y).float().mean())

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)

    class EpochTimer(pl.Callback):
        """Each epoch's training batches only (Lightning validates inside the epoch)."""

        def __init__(self) -> None:
            self.epochs: list[tuple[float, float]] = []
            self._open: tuple[float, float] | None = None

        def on_train_epoch_start(self, trainer, module) -> None:
            self._open = (time.perf_counter(), time.process_time())

        def _close(self) -> None:
            if self._open is not None:
                t0, c0 = self._open
                self.epochs.append((time.perf_counter() - t0, time.process_time() - c0))
                self._open = None

        def on_validation_epoch_start(self, trainer, module) -> None:
            self._close()

        def on_train_epoch_end(self, trainer, module) -> None:
            self._close()

    timer = EpochTimer()
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_epochs=epochs, gradient_clip_val=CLIP,
        gradient_clip_algorithm="norm", logger=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, callbacks=[timer],
        default_root_dir=str(work / "lightning"),
    )
    train = DataLoader(TensorDataset(*data["train"]), batch_size=BATCH, shuffle=True)
    validation = DataLoader(TensorDataset(*data["validation"]), batch_size=256)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "does not have many workers" and the like
        trainer.fit(Module(), train_dataloaders=train, val_dataloaders=validation)
    accuracy = hand_accuracy(model, data["test"])
    return {"loop_s": sum(w for w, _ in timer.epochs),
            "loop_cpu_s": sum(c for _, c in timer.epochs),
            "rows": len(data["train"][2]) * epochs, "total_s": time.perf_counter() - start,
            "accuracy": accuracy, "params": sum(q.numel() for q in model.parameters())}
