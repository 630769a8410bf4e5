"""What a run sets up before its first epoch, in the order the trainer calls it: the spec it
was given, checked; this process (threads, process group, device); the run folder,
determinism and seeds; the data; then the model, monitor, epoch count, optimizer, schedule and
scaler (restored from the checkpoint when resuming). Each function takes the
:class:`~mmcore.train.Trainer` and sets the attributes its docstring names."""

from __future__ import annotations

import contextlib
import math
import os
import random
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmcore.errors import CheckpointError
from mmcore.model import MultimodalModel, build_model, check_encoders
from mmcore.plugins.registry import Registry
from mmcore.run.layout import prepare_run_folder, save_spec
from mmcore.spec.load import load_spec, unchecked_data, validate_spec
from mmcore.spec.model import Spec
from mmcore.strategy import resolve_device
from mmcore.train.members import member_seeds
from mmcore.train.optim import build_optimizer, build_scheduler, frozen_encoders, set_frozen
from mmcore.train.run_data import set_up_data
from mmcore.train.settings import (
    TRAIN,
    VALIDATION,
    check_precision,
    resolve_ema,
    resolve_epochs,
    resolve_monitor,
    resolve_threads,
    set_deterministic,
)
from mmcore.train.trainer_state import restore
from mmcore.train.weight_average import WeightAverage

#: training rows the encoders are run on once before training (see check_encoders)
DRY_RUN_ROWS = 4


def checked_spec(spec: Spec | str | Path | Mapping[str, Any], overrides: Iterable[str],
                 registry: Registry, trust_code: bool) -> Spec:
    """The validated spec a trainer was given: a spec file loaded (``trust_code``: see
    :func:`~mmcore.spec.load.load_spec`), a dict validated, a :class:`Spec` validated again
    when ``overrides`` change it or it is a ``spec.json``'s not yet checked as one."""
    overrides = list(overrides)
    if isinstance(spec, str | Path):
        return load_spec(spec, overrides, registry=registry, trust_code=trust_code)
    if overrides or not isinstance(spec, Spec) or unchecked_data(spec):
        # a Spec keeps its own source and folder (validate_spec takes them from it)
        return validate_spec(spec, overrides=overrides, registry=registry,
                             trust_code=trust_code)
    return spec


@contextlib.contextmanager
def torch_settings_kept() -> Iterator[None]:
    """torch's deterministic mode, cuDNN benchmark flag, thread count and flushing of
    subnormal floats put back as they were on the way out, whatever the run set."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    benchmark = torch.backends.cudnn.benchmark
    threads = torch.get_num_threads()
    flushed = denormals_flushed()
    try:
        yield
    finally:
        set_deterministic(deterministic)
        torch.backends.cudnn.benchmark = benchmark
        torch.set_num_threads(threads)
        torch.set_flush_denormal(flushed)


def denormals_flushed() -> bool:
    """Whether the CPU now treats subnormal floats as zero (``torch.set_flush_denormal``,
    which has no getter): a subnormal float32 times one comes out as zero then."""
    return bool(torch.tensor([1e-40], dtype=torch.float32).mul(1.0)[0] == 0)


def set_up_process(trainer: Any) -> None:
    """This process's threads, the batch-size check and the strategy's process group and
    device."""
    spec, train, strategy = trainer.spec, trainer.spec.train, trainer.strategy
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    # an ensemble's members each read the training split through their own loader
    workers = train.num_workers * len(member_seeds(train, spec.data.streaming))
    torch.set_num_threads(resolve_threads(train.threads, workers, local, torch.get_num_threads()))
    # this thread and the threads started after it (torch's pool, when fit starts it);
    # False where the CPU cannot: nothing to do then
    torch.set_flush_denormal(train.flush_denormal)
    strategy.check_batch_size(train.batch_size, spec.source)
    strategy.setup(spec, resolve_device(train.device, spec.source))


def set_up_run(trainer: Any) -> Path | None:
    """The run folder (locked and prepared by the main process), ``device`` and its
    precision check, determinism and the seeds; returns the checkpoint to resume from
    (every process gets the main one's answer), else ``None``."""
    spec, train, strategy = trainer.spec, trainer.spec.train, trainer.strategy
    resume_from = strategy.on_main(lambda: _prepare_run_folder(trainer), share=True)
    trainer.device = strategy.device
    check_precision(train.precision, trainer.device, spec.source)
    if train.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        set_deterministic(True)
        torch.backends.cudnn.benchmark = False
    seed_everything(train.seed)
    return resume_from


def _prepare_run_folder(trainer: Any) -> Path | None:
    # Only the writer (the main process) locks, until fit() returns.
    trainer.lock.acquire()
    return prepare_run_folder(trainer.run, resume=trainer.resume, overwrite=trainer.overwrite,
                              note=trainer.note)


def seed_everything(seed: int) -> None:
    """Python's, numpy's and torch's generators seeded from ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_up_run_data(trainer: Any, modalities: dict[str, Any], resume_from: Path | None) -> Spec:
    """``data`` on every process (see :func:`~mmcore.train.run_data.set_up_data`), then
    ``resolved_spec`` (the spec whose heads carry fitted options, which it returns) and
    ``weights`` (the heads' loss weights)."""
    # The main process fits and preprocesses first (filling the cache) and saves the
    # resolved spec; the others then load its fitted state from the run folder and read
    # the cache.
    def on_main() -> Spec:
        resolved = _set_up_data(trainer, modalities, from_run=resume_from is not None)
        save_spec(trainer.run, resolved)
        return resolved

    resolved = trainer.strategy.on_main(on_main)
    if resolved is None:
        try:
            resolved = _set_up_data(trainer, modalities, from_run=True)
        except CheckpointError as exc:
            raise CheckpointError(
                f"{exc}\n(rank {trainer.rank} reads what rank 0 wrote to {trainer.run.path}: "
                "on several machines the run folder must be on a filesystem they share)"
            ) from None
    trainer.resolved_spec = resolved
    trainer.weights = {name: head.weight for name, head in resolved.heads.items()}
    return resolved


def _set_up_data(trainer: Any, modalities: dict[str, Any], from_run: bool) -> Spec:
    trainer.data, resolved = set_up_data(
        trainer.spec, modalities, trainer.run, trainer.registry, from_run=from_run,
        writer=trainer.is_main, progress=trainer.show_progress)
    return resolved


def build_training(trainer: Any, resolved: Spec, modalities: dict[str, Any],
                   resume_from: Path | None) -> None:
    """``model``, ``has_validation``, ``monitor``, ``epochs``, ``optimizer``, ``scheduler``,
    ``scaler`` and ``net`` (the wrapped model), restored from ``resume_from`` if given, with
    the encoders frozen as the next epoch has them."""
    spec, train, strategy = trainer.spec, trainer.spec.train, trainer.strategy
    torch.manual_seed(train.seed)  # the same initial weights whatever the data layer drew
    model = build_model(resolved, modalities, trainer.registry).to(trainer.device)
    trainer.model = model
    dm = trainer.data
    _check_encoders(trainer, model, resolved)
    trainer.has_validation = has_validation = (
        VALIDATION in dm.splits and dm.num_rows(VALIDATION) > 0)
    trainer.monitor = resolve_monitor(train.monitor, model, has_validation, spec.source)
    if train.monitor and not has_validation:
        trainer.note(f"no validation split: monitoring the training loss, not {train.monitor}")
    batches = math.ceil(dm.num_rows(TRAIN) / train.batch_size)
    trainer.epochs = epochs = resolve_epochs(train.epochs, dm.num_rows(TRAIN),
                                             train.batch_size, train.accumulate)
    if train.epochs == "auto":
        trainer.note(f"train.epochs='auto': {epochs} epochs of "
                     f"{math.ceil(batches / train.accumulate)} optimizer steps")
    total_steps = math.ceil(batches / train.accumulate) * epochs
    _set_up_average(trainer, dm.num_rows(TRAIN), total_steps)
    strategy.shard(model)  # before the optimizer, which must hold the sharded parameters
    trainer.optimizer = build_optimizer(model, train, resolved.modalities)
    trainer.scheduler = build_scheduler(trainer.optimizer, train, total_steps)
    trainer.scaler = torch.amp.GradScaler("cuda") if train.precision == "fp16" else None
    if resume_from is not None:
        restore(trainer, resume_from)
    set_frozen(model, trainer.optimizer,
               frozen_encoders(resolved.modalities, trainer.epoch + 1))
    for name, m in resolved.modalities.items():
        if m.freeze and m.unfreeze_at is not None and m.unfreeze_at > epochs:
            trainer.note(f"modalities.{name}.unfreeze_at={m.unfreeze_at} is after the last "
                         f"epoch ({epochs}): the {name} encoder stays frozen")
    trainer.net = strategy.wrap(model)


def _set_up_average(trainer: Any, rows: int, steps: int) -> None:
    """``average``: the weights' average of ``train.ema`` (``"auto"`` resolved on ``rows``
    training rows and ``steps`` optimizer steps), with a note saying what it does."""
    ema = trainer.spec.train.ema
    decay = resolve_ema(ema, rows, steps, trainer.spec.train.scheduler)
    trainer.average = WeightAverage(decay)
    if decay is None:
        return
    horizon = round(1 / (1 - decay))
    if ema == "auto":
        trainer.note(f"train.ema='auto': validating and keeping an average of the weights "
                     f"(decay {decay:g}, about the last {horizon} steps) on this small data")
    elif steps < 3 * horizon:
        trainer.note(f"train.ema={decay:g} averages over about {horizon} optimizer steps, "
                     f"and this run has {steps}: its first weights weigh on the average (a "
                     "smaller decay, or more epochs)")


def _check_encoders(trainer: Any, model: MultimodalModel, spec: Spec) -> None:
    """Each encoder once on a few real training rows, so one whose output differs from
    what it declares is named now rather than as a shape error in the fusion later."""
    rows = min(DRY_RUN_ROWS, trainer.spec.train.batch_size)
    loader = trainer.data.loader(TRAIN, batch_size=rows, shuffle=False)
    batch = next(iter(loader), None)
    if batch is not None:
        check_encoders(model, {k: v.to(trainer.device) for k, v in batch.inputs.items()}, spec)
