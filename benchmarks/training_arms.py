"""The three ways of training one model that ``trainer_overhead.py`` and ``gpu.py`` compare:
``mmcore.Trainer``, a hand-written PyTorch loop and PyTorch Lightning's ``Trainer``.

All three get the same model (built by mmcore from the spec, after ``torch.manual_seed(seed)``),
the same preprocessed batches (one ``DataModule`` cache; ``dm.loader("train", ...)``,
shuffled, the spec's batch size), AdamW at the spec's learning rate and weight decay (torch's
fused kernel in every arm, as mmcore's optimizer uses, where torch has one), the
gradient norm clipped at ``train.grad_clip``, a constant learning rate, and the same number of
epochs. Each arm returns ``rows`` (samples trained) and ``loop_s`` / ``loop_cpu_s``, the wall
and process CPU seconds of its training loop, leaving out the first ``skip`` epochs of the run
(``torch.compile`` compiles during the first); mmcore's arm also splits ``Trainer.fit()``.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchlib
from stopwatch import Stopwatch, patched  # noqa: F401 (arms_lib.Stopwatch)

from mmcore.plugins.hookspecs import hookimpl

#: "control" is the plain loop run a second time in each round: its ratio to "plain" is what
#: noise alone does to a ratio, and the two plain runs bracket the others in time
ARMS = ("plain", "mmcore", "lightning", "control")


# -- set-up ----------------------------------------------------------------------------------
@dataclass
class Setup:
    """Everything the arms share."""

    model_name: str
    spec: Any  # the validated mmcore Spec
    resolved: Any  # the spec with the heads' fitted options (the classes)
    dm: Any  # a set-up DataModule
    registry: Any
    device: Any
    compile: bool
    work: Path
    train_rows: int

    @property
    def train(self) -> Any:
        return self.spec.train

    @property
    def head(self) -> str:
        return next(iter(self.spec.heads))

    @property
    def precision(self) -> str:
        return self.spec.train.precision


def prepare(
    model: str, work: Path, *, device: str = "cpu", precision: str = "32", epochs: int = 2,
    batch_size: int = 32, compile: bool = False,
) -> Setup | None:
    """Validate the spec of :data:`benchlib.MODELS` ``model``, preprocess its data once (into
    ``work/cache``) and fit the heads; ``None`` when the model's data is absent."""
    import torch

    from mmcore.data import DataModule
    from mmcore.model import build_modalities
    from mmcore.plugins import get_registry
    from mmcore.spec import validate_spec

    registry = get_registry()
    raw = benchlib.model_spec(
        model, work / "cache", epochs=epochs, batch_size=batch_size, scheduler="constant",
        precision=precision, device=device,
    )
    if raw is None:
        return None
    spec = validate_spec(raw, base_dir=benchlib.AV_DIGITS, registry=registry)
    dm = DataModule(spec, build_modalities(spec, registry), registry=registry, progress=False)
    dm.setup()
    heads = {
        n: h.model_copy(update={"options": dict(dm.head_options.get(n, h.options))})
        for n, h in spec.heads.items()
    }
    resolved = spec.model_copy(update={"heads": heads})
    return Setup(model, spec, resolved, dm, registry, torch.device(device), compile, work,
                 dm.num_rows("train"))


def build(setup: Setup):
    """The model, built by mmcore from the resolved spec after seeding with the spec's seed."""
    import torch

    from mmcore.model import build_model

    torch.manual_seed(setup.train.seed)
    model = build_model(setup.resolved, setup.dm.modalities, setup.registry).to(setup.device)
    if setup.compile:
        model.compile()  # in place: parameter names (and checkpoints) stay as they are
    return model


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device, precision: str):
    import torch

    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_loader(setup: Setup, epoch: int):
    train = setup.train
    return setup.dm.loader(
        "train", batch_size=train.batch_size, shuffle=True, seed=train.seed, epoch=epoch,
        num_workers=train.num_workers, pin_memory=setup.device.type == "cuda",
    )


# -- arm: a plain PyTorch loop ---------------------------------------------------------------
def plain_step(setup: Setup, model, optimizer, batch) -> None:
    """One hand-written training step: to device, forward, loss, zero_grad, backward, clip,
    optimizer step."""
    import torch

    name = setup.head
    batch = batch.to(setup.device, non_blocking=True)
    with autocast(setup.device, setup.precision):
        outputs = model(batch.inputs)
    loss = model.heads[name].loss(outputs[name], batch.targets[name])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), setup.train.grad_clip)
    optimizer.step()


def plain_optimizer(setup: Setup, model):
    """AdamW over every parameter, as a hand-written loop would build it, on torch's fused
    kernel (the one mmcore's optimizer uses) where torch has one for the parameters."""
    return adamw(list(model.parameters()), setup.train)


def adamw(params: list, train: Any):
    """``torch.optim.AdamW`` at ``train``'s learning rate and weight decay, fused where it can
    be (so that every arm steps with the same kernel), else torch's default."""
    import torch

    try:
        return torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay,
                                 fused=True)
    except (RuntimeError, ValueError):  # no fused kernel for this device or dtype
        return torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)


#: ``hook(epoch)`` gives a context manager each arm enters around each training epoch
EpochHook = Callable[[int], contextlib.AbstractContextManager]


def no_hook(epoch: int) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext()


def run_plain(
    setup: Setup, epochs: int, run: int = 0, skip: int = 0, hook: EpochHook = no_hook
) -> dict[str, float]:
    """zero_grad / forward / loss / backward / clip / step, nothing else."""
    model = build(setup)
    optimizer = plain_optimizer(setup, model)
    walls, cpus = [], []
    model.train()
    for epoch in range(1, epochs + 1):
        start, cpu = time.perf_counter(), time.process_time()
        with hook(epoch):
            for batch in train_loader(setup, epoch):
                plain_step(setup, model, optimizer, batch)
            synchronize(setup.device)
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return {"loop_s": sum(walls[skip:]), "loop_cpu_s": sum(cpus[skip:]),
            "rows": setup.train_rows * (epochs - skip)}


# -- arm: mmcore.Trainer -----------------------------------------------------------------------
class CompileOnStart:
    """Compiles the trainer's model in place when training starts (``torch.compile``)."""

    @hookimpl
    def on_train_start(self, trainer) -> None:
        trainer.model.compile()


#: the parts of ``Trainer.fit()`` timed apart, in order (``fit_<part>_s``; ``fit_loop_s``
#: counts every epoch, ``loop_s`` only the timed ones)
FIT_PARTS = ("setup", "loop", "validation", "checkpoint", "final")


def run_mmcore(
    setup: Setup, epochs: int, run: int = 0, skip: int = 0, hook: EpochHook = no_hook
) -> dict[str, float]:
    """``Trainer(spec).fit()``: the training loop (``Trainer._train_epoch``) and the other
    parts of ``fit()`` timed apart."""
    import mmcore
    from mmcore.run import checkpoint as ck
    from mmcore.train import records
    from mmcore.train import trainer as trainer_module

    spec = setup.spec.model_copy(
        update={"train": setup.train.model_copy(update={"epochs": epochs})}
    )
    trainer = mmcore.Trainer(
        spec, output=setup.work / f"run-{run}", overwrite=True, quiet=True, plots=False,
        report=False, registry=setup.registry,
    )
    train_epoch = trainer._train_epoch

    def hooked(epoch: int, *args, **kwargs):
        with hook(epoch):
            return train_epoch(epoch, *args, **kwargs)

    trainer._train_epoch = hooked
    watch = Stopwatch()
    watch.on(trainer, "_train_epoch", "loop")
    watch.on(trainer, "evaluate", "validation")  # inside _finish it counts as "final"
    watch.on(trainer, "_finish", "final")
    hook_name = f"bench-compile-{run}"
    if setup.compile:
        setup.registry.pm.register(CompileOnStart(), name=hook_name)
    start = time.perf_counter()
    try:
        with patched(ck, ["write_checkpoint", "prune_checkpoints"], watch, "checkpoint"), \
                patched(records, ["publish_best", "write_history"], watch, "checkpoint"), \
                patched(trainer_module, ["set_up_run_data"], watch, "setup"):
            trainer.fit()
    finally:
        if setup.compile:
            setup.registry.pm.unregister(name=hook_name)
    total = time.perf_counter() - start
    out = {f"fit_{p}_s": watch.seconds.get(p, 0.0) for p in FIT_PARTS}
    out["total_s"] = total
    out["fit_other_s"] = total - sum(out[f"fit_{p}_s"] for p in FIT_PARTS)
    epochs_timed = watch.calls["loop"][skip:]
    out["loop_s"] = sum(wall for wall, _ in epochs_timed)
    out["loop_cpu_s"] = sum(cpu for _, cpu in epochs_timed)
    out["rows"] = setup.train_rows * (epochs - skip)
    return out


# -- arm: PyTorch Lightning ----------------------------------------------------------------------
def import_lightning() -> tuple[Any, str]:
    """``(module, version)`` of ``pytorch_lightning`` (or ``lightning.pytorch``), or
    ``(None, why not)``."""
    why = ""
    for name in ("pytorch_lightning", "lightning.pytorch"):
        try:
            module = __import__(name, fromlist=["Trainer"])
        except Exception as exc:  # not installed, or built against another torch
            why += f"{name}: {type(exc).__name__}: {exc}. "
            continue
        for logger in ("pytorch_lightning", "lightning", "lightning.pytorch",
                       "lightning.fabric", "lightning_fabric"):
            logging.getLogger(logger).setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", module=r"(pytorch_)?lightning.*")
        return module, getattr(module, "__version__", "?")
    return None, why.strip()


def run_lightning(
    setup: Setup, epochs: int, run: int = 0, skip: int = 0, hook: EpochHook = no_hook, *,
    pl: Any,
) -> dict[str, float]:
    """The same model in a ``LightningModule``; Lightning's loop, clipping and AdamW."""

    train, device, name = setup.train, setup.device, setup.head
    model = build(setup)
    head = model.heads[name]

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def training_step(self, batch, batch_idx):
            outputs = self.model(batch.inputs)
            return head.loss(outputs[name], batch.targets[name])

        def configure_optimizers(self):
            return adamw(list(self.parameters()), train)

    class EpochTimer(pl.Callback):
        def __init__(self) -> None:
            self.epochs: list[tuple[float, float]] = []
            self._start = self._cpu = 0.0

        def on_train_epoch_start(self, trainer, module) -> None:
            self._hook = hook(trainer.current_epoch + 1)
            self._hook.__enter__()
            self._start, self._cpu = time.perf_counter(), time.process_time()

        def on_train_epoch_end(self, trainer, module) -> None:
            synchronize(device)
            self.epochs.append(
                (time.perf_counter() - self._start, time.process_time() - self._cpu)
            )
            self._hook.__exit__(None, None, None)

    timer = EpochTimer()
    trainer = pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, max_epochs=epochs,
        precision="bf16-mixed" if setup.precision == "bf16" else "32-true",
        gradient_clip_val=train.grad_clip, gradient_clip_algorithm="norm",
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
        use_distributed_sampler=False, callbacks=[timer],
    )
    # one loader for the run: Lightning calls loader.batch_sampler.set_epoch(e) each epoch
    loader = train_loader(setup, 1)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "does not have many workers" and the like
        trainer.fit(Module(), train_dataloaders=loader)
    total = time.perf_counter() - start
    timed = timer.epochs[skip:]
    return {"loop_s": sum(w for w, _ in timed), "loop_cpu_s": sum(c for _, c in timed),
            "total_s": total, "rows": setup.train_rows * (epochs - skip)}


# -- alternating repeats ---------------------------------------------------------------------------
@dataclass
class Comparison:
    """Each arm's per-round figures (round ``i`` of every arm ran back to back)."""

    setup: Setup
    arms: list[str]
    epochs: int
    rounds: int
    runs: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    skip: int = 0  # untimed epochs at the start of each run (``epochs`` counts the timed ones)

    def rate(self, arm: str, key: str = "loop_s") -> list[float]:
        """Samples per second (``loop_s``) or per CPU second (``loop_cpu_s``), per round."""
        return [r["rows"] / r[key] for r in self.runs[arm]]

    def paired_ratio(self, a: str, b: str, key: str = "loop_s") -> list[float]:
        """Per round: ``a``'s rate over ``b``'s. Runs of one round are neighbours in time, so
        a change in the machine's load between rounds largely cancels. With ``b="plain"``
        and a control arm, ``b``'s rate is the mean of the round's two plain runs, which
        bracket the other arms in time."""
        theirs = self.rate(b, key)
        if b == "plain" and a != "control" and "control" in self.runs:
            theirs = [(x + y) / 2 for x, y in zip(theirs, self.rate("control", key),
                                                   strict=True)]
        return [x / y for x, y in zip(self.rate(a, key), theirs, strict=True)]


def compare(
    setup: Setup, arms: list[str], *, rounds: int, epochs: int, pl: Any = None,
    threads: int | None = None, skip: int = 0,
) -> Comparison:
    """Round 0 (``skip + 1`` epochs per arm, not kept) warms up; then ``rounds`` rounds of
    every arm in turn, each run leaving its first ``skip`` epochs out of the timing."""
    import torch

    runners: dict[str, Callable[[int, int, int], dict[str, float]]] = {
        "plain": lambda e, i, k: run_plain(setup, e, i, k),
        "mmcore": lambda e, i, k: run_mmcore(setup, e, i, k),
        "lightning": lambda e, i, k: run_lightning(setup, e, i, k, pl=pl),
        "control": lambda e, i, k: run_plain(setup, e, i, k),
    }
    unknown = [a for a in arms if a not in ARMS]
    if unknown or ("lightning" in arms and pl is None):
        raise ValueError(f"arms must be among {', '.join(ARMS)} (lightning needs pl), got "
                         f"{', '.join(arms)}")
    result = Comparison(setup, list(arms), epochs - skip, rounds, {a: [] for a in arms}, skip)
    for i in range(rounds + 1):
        for arm in arms:
            figures = runners[arm](skip + 1 if i == 0 else epochs, i, skip)
            if threads is not None and torch.get_num_threads() != threads:
                print(f"note: {arm} changed torch's threads to {torch.get_num_threads()}; "
                      f"set back to {threads}", file=sys.stderr)
                torch.set_num_threads(threads)
            if i:
                result.runs[arm].append(figures)
                print(f"{setup.model_name} round {i} {arm}: "
                      f"{figures['rows'] / figures['loop_s']:.1f} samples/s, "
                      f"{figures['rows'] / figures['loop_cpu_s']:.1f} per CPU second",
                      file=sys.stderr)
    return result
