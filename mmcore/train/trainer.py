"""End-to-end training of a spec: ``Trainer(spec).fit()``.

Every encoder, the fusion and every head are optimised together on the weighted sum of the
heads' losses. Each epoch is validated, checkpointed (see :mod:`mmcore.run.checkpoint`) and
logged; the best epoch by ``train.monitor`` gives the run's ``model.safetensors``.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmcore.errors import CheckpointError, SpecError
from mmcore.log import note as log_note
from mmcore.model import MultimodalModel, build_modalities, build_model, check_encoders
from mmcore.plugins.default import get_registry
from mmcore.plugins.registry import Registry
from mmcore.run import checkpoint as ck
from mmcore.run.layout import RunFolder, default_run_dir, prepare_run_folder, save_spec
from mmcore.run.lock import RunLock
from mmcore.spec.load import load_spec, validate_spec
from mmcore.spec.model import Spec
from mmcore.train.callbacks.defaults import trainer_hooks
from mmcore.train.callbacks.summary import summary as run_summary
from mmcore.train.epoch_state import LOG_EVERY, EpochProgress, dropout_seed
from mmcore.train.evaluation import SplitResult, autocast_context, evaluate_model, weighted_loss
from mmcore.train.health import HealthChecks
from mmcore.train.masking import modality_dropout
from mmcore.train.modality_loss import alone_loss
from mmcore.train.optim import build_optimizer, build_scheduler, frozen_encoders, set_frozen
from mmcore.train.parallel import select_strategy
from mmcore.train.progress import bars_render, tqdm
from mmcore.train.records import record_epoch
from mmcore.train.refused_writes import refused_writes_reported
from mmcore.train.report import Transform
from mmcore.train.run_data import set_up_data
from mmcore.train.settings import (
    TEST,
    TRAIN,
    VALIDATION,
    Monitor,
    check_precision,
    resolve_device,
    resolve_epochs,
    resolve_monitor,
    resolve_threads,
    set_deterministic,
)
from mmcore.train.strategy import Strategy
from mmcore.train.trainer_state import best_info, restore, save_checkpoint

#: training rows the encoders are run on once before training (see check_encoders)
DRY_RUN_ROWS = 4


class Trainer:
    """Trains the model a spec declares and writes a run folder.

    Args:
        spec: a :class:`~mmcore.spec.Spec`, or a path to a spec file (``.py`` or ``.json``).
        output: the run folder (default: ``spec.output``, else ``runs/<spec.name>``, relative
            to the current folder).
        resume: continue from the newest complete checkpoint in the run folder (start from
            scratch, with a note, when there is none).
        overwrite: replace an earlier run in the same folder (otherwise that is an error).
        overrides: field overrides such as ``"train.epochs=3"``.
        quiet: no progress bars and no notes.
        progress: force progress bars on/off (default: ``train.progress`` and only when
            stderr is a terminal).
        plots: turn on the ``plots`` callback (training curves and confusion matrices, when
            matplotlib is installed).
        report: turn on the ``modality_report`` callback (after training, the best model
            with each modality hidden and alone, ``modality_report.json``).
        summary: turn on the ``summary`` callback (the run's summary as a note at the end;
            ``mmcore train`` prints its own).
        callbacks: objects with ``@mmcore.hookimpl`` trainer events, called beside the spec's
            ``train.callbacks`` (on rank 0); one may call :meth:`stop`.
        registry: the plugin registry (default: the process-wide one).
        trust_code: with ``spec`` a ``spec.json`` path, let it name callback classes in any
            module (imported); without it only mmcore's and installed plugins' modules.

    After :meth:`fit` the attributes ``model``, ``optimizer``, ``scheduler``, ``resolved_spec``,
    ``history`` (one dict per epoch), ``best_epoch``, ``best_value`` and ``final_metrics`` are
    set. Callbacks get the trainer and may read these, plus ``run_dir``, ``epoch`` (the last
    finished epoch), ``step`` (optimizer steps so far), ``bad_epochs`` (since the best),
    ``monitor``, ``data`` and, at the end, ``final_results`` (each evaluated split's
    :class:`~mmcore.train.evaluation.SplitResult`); setting ``stopped_early`` ends training
    after the epoch. The built-in callbacks (:mod:`mmcore.train.callbacks`) set ``health``
    (the run's health warnings, ``health.json``) and ``modality_report``.

    Started by ``torchrun`` (``WORLD_SIZE`` > 1), it trains on ``world_size`` processes with
    the ``train.strategy`` (DDP or FSDP, :mod:`mmcore.train.parallel`), ``train.batch_size``
    being the global batch; rank 0 alone writes the run folder, shows progress and calls the
    callbacks. ``strategy`` holds the processes' collective steps (:mod:`mmcore.train.strategy`);
    ``rank``, ``world_size`` and ``is_main`` say where this process stands (0, 1 and True in
    a single process).
    """

    def __init__(
        self,
        spec: Spec | str | Path,
        *,
        output: str | Path | None = None,
        resume: bool = False,
        overwrite: bool = False,
        overrides: Iterable[str] = (),
        quiet: bool = False,
        progress: bool | None = None,
        plots: bool = True,
        report: bool = True,
        summary: bool = True,
        callbacks: Iterable[object] = (),
        registry: Registry | None = None,
        trust_code: bool = False,
    ) -> None:
        self.registry = registry or get_registry()
        overrides = list(overrides)
        if isinstance(spec, str | Path):
            spec = load_spec(spec, overrides, registry=self.registry, trust_code=trust_code)
        elif overrides or not isinstance(spec, Spec):
            spec = validate_spec(
                spec, source=getattr(spec, "source", "<spec>"),
                base_dir=getattr(spec, "base_dir", None), overrides=overrides,
                registry=self.registry,
            )
        self.spec: Spec = spec
        self.strategy: Strategy = select_strategy(spec.train.strategy)
        self.run_dir = default_run_dir(spec, output)
        self.run = RunFolder(self.run_dir)
        self.resume = resume
        self.overwrite = overwrite
        self.lock = RunLock(self.run_dir)  # taken by the process that writes the run folder
        self.quiet = quiet
        self.plots = plots
        self.report = report
        self.modality_report: dict[str, Any] | None = None
        self.health: HealthChecks | None = None  # set by the health callback
        wanted = spec.train.progress if progress is None else progress
        self.show_progress = bool(
            wanted and not quiet and self.is_main and (progress or bars_render())
        )
        self.summary = summary
        self.callbacks = list(callbacks)
        self._stop = False
        self.model: MultimodalModel | None = None
        self.net: torch.nn.Module | None = None  # what the training forward calls
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self.scaler: torch.amp.GradScaler | None = None
        self.resolved_spec: Spec | None = None
        self.data: Any = None
        self.monitor: Monitor | None = None
        self.device = torch.device("cpu")
        self.epoch = 0
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.best_epoch: int | None = None
        self.best_value: float | None = None
        self.epochs: int | None = None  # train.epochs resolved ('auto') once the data is read
        self.stopped_early = False
        self.final_metrics: dict[str, Any] = {}
        self.final_results: dict[str, SplitResult] = {}
        self.last_checkpoint: Path | None = None
        self.progress = EpochProgress()  # where the epoch being trained is

    @property
    def rank(self) -> int:
        return self.strategy.rank

    @property
    def world_size(self) -> int:
        return self.strategy.world_size

    @property
    def is_main(self) -> bool:
        return self.strategy.is_main

    @property
    def bad_epochs(self) -> int:
        """Finished epochs since the best one (all of them while none was best)."""
        return self.epoch - (self.best_epoch or 0)

    # -- public ---------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train, keep the best epoch, evaluate it on validation and test; returns what
        ``metrics.json`` holds: ``best_epoch``, ``monitor``, ``best_value``, ``epochs``,
        ``stopped_early`` and a dict of metrics per evaluated split."""
        deterministic_before = torch.are_deterministic_algorithms_enabled()
        benchmark_before = torch.backends.cudnn.benchmark
        threads_before = torch.get_num_threads()
        failed = True
        try:
            with refused_writes_reported(self.run.path):
                self._set_up_process(threads_before)
                final = self._fit()
            failed = False
            return final
        finally:
            self.lock.release()
            self.strategy.close(failed=failed)
            set_deterministic(deterministic_before)
            torch.backends.cudnn.benchmark = benchmark_before
            torch.set_num_threads(threads_before)

    def stop(self) -> None:
        """End training after the current epoch (for callbacks, e.g. a tuner pruning a
        trial); the best epoch so far is evaluated and saved as usual. With several
        processes rank 0's call stops every rank."""
        self._stop = True

    def note(self, message: str) -> None:
        """A note for the user through the ``mmcore`` logger (:mod:`mmcore.log`): shown on
        stderr unless logging is configured otherwise; a ``DEBUG`` record when quiet; nothing
        on ranks other than 0."""
        if self.is_main:
            log_note(message, quiet=self.quiet)

    # -- setup ----------------------------------------------------------------------------
    def _set_up_process(self, threads_before: int) -> None:
        """This process's threads, the batch-size check and the strategy's process group and
        device."""
        train = self.spec.train
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
        torch.set_num_threads(
            resolve_threads(train.threads, train.num_workers, local, threads_before))
        self.strategy.check_batch_size(train.batch_size, self.spec.source)
        if train.modality_loss > 0 and self.strategy.world_size > 1:
            raise SpecError(self.spec.source, [(
                "train.modality_loss", "runs one more forward pass per modality, which "
                "DDP/FSDP do not allow before the backward pass: train on one process, or "
                "use train.modality_dropout")])
        self.strategy.setup(self.spec, resolve_device(train.device, self.spec.source))

    def _prepare_run_folder(self) -> Path | None:
        # Only the writer (the main process, through strategy.on_main) locks, until fit()
        # returns.
        self.lock.acquire()
        return prepare_run_folder(self.run, resume=self.resume, overwrite=self.overwrite,
                                  note=self.note)

    def _seed(self, seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)

    def _setup_data(self, modalities: dict[str, Any], from_run: bool) -> Spec:
        """Set up :attr:`data` (see :func:`~mmcore.train.run_data.set_up_data`); returns
        the spec whose heads carry fitted options."""
        self.data, resolved = set_up_data(self.spec, modalities, self.run, self.registry,
                                          from_run=from_run, writer=self.is_main,
                                          progress=self.show_progress)
        return resolved

    # -- the run --------------------------------------------------------------------------
    def _setup_main(self, modalities: dict[str, Any], resume_from: Path | None) -> Spec:
        resolved = self._setup_data(modalities, resume_from is not None)
        save_spec(self.run, resolved)
        return resolved

    def _fit(self) -> dict[str, Any]:
        """The run on this process: its folder, seeds and callbacks, the data, the model and
        optimizer, the epochs, then the final evaluation (:meth:`fit` returns it)."""
        spec, train, strategy = self.spec, self.spec.train, self.strategy
        resume_from = strategy.on_main(self._prepare_run_folder, share=True)
        self.device = strategy.device
        check_precision(train.precision, self.device, spec.source)
        if train.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            set_deterministic(True)
            torch.backends.cudnn.benchmark = False
        self._seed(train.seed)
        # the callbacks run on the main process; the others run only what needs them all
        self.hooks = (strategy.on_main(lambda: trainer_hooks(self, main=True))
                      or trainer_hooks(self, main=False))

        modalities = build_modalities(spec, self.registry)
        resolved = self._resolve_data(modalities, resume_from)
        self._build_training(resolved, modalities, resume_from)
        self._train_epochs()
        return self._finish()

    def _resolve_data(self, modalities: dict[str, Any], resume_from: Path | None) -> Spec:
        """Set up the data on every process; returns (and keeps) the resolved spec."""
        # The main process fits and preprocesses first (filling the cache); the others then
        # load its fitted state from the run folder and read the cache.
        resolved = self.strategy.on_main(lambda: self._setup_main(modalities, resume_from))
        if resolved is None:
            try:
                resolved = self._setup_data(modalities, from_run=True)
            except CheckpointError as exc:
                raise CheckpointError(
                    f"{exc}\n(rank {self.rank} reads what rank 0 wrote to {self.run.path}: on "
                    "several machines the run folder must be on a filesystem they share)"
                ) from None
        self.resolved_spec = resolved
        self.weights = {name: head.weight for name, head in resolved.heads.items()}
        return resolved

    def _build_training(self, resolved: Spec, modalities: dict[str, Any],
                        resume_from: Path | None) -> None:
        """The model, the monitor, the epoch count, the optimizer, schedule and scaler,
        restored from ``resume_from`` if given, with the encoders frozen as the next epoch
        has them."""
        spec, train, strategy = self.spec, self.spec.train, self.strategy
        torch.manual_seed(train.seed)  # the same initial weights whatever the data layer drew
        self.model = model = build_model(resolved, modalities, self.registry).to(self.device)
        dm = self.data
        self._check_encoders(model, resolved)
        self.has_validation = VALIDATION in dm.splits and dm.num_rows(VALIDATION) > 0
        self.monitor = resolve_monitor(train.monitor, model, self.has_validation, spec.source)
        if train.monitor and not self.has_validation:
            self.note(f"no validation split: monitoring the training loss, not {train.monitor}")
        batches = math.ceil(dm.num_rows(TRAIN) / train.batch_size)
        self.epochs = resolve_epochs(train.epochs, dm.num_rows(TRAIN), train.batch_size,
                                     train.accumulate)
        if train.epochs == "auto":
            self.note(f"train.epochs='auto': {self.epochs} epochs of "
                      f"{math.ceil(batches / train.accumulate)} optimizer steps")
        total_steps = math.ceil(batches / train.accumulate) * self.epochs
        strategy.shard(model)  # before the optimizer, which must hold the sharded parameters
        self.optimizer = build_optimizer(model, train, resolved.modalities)
        self.scheduler = build_scheduler(self.optimizer, train, total_steps)
        self.scaler = torch.amp.GradScaler("cuda") if train.precision == "fp16" else None
        if resume_from is not None:
            restore(self, resume_from)
        set_frozen(model, self.optimizer, frozen_encoders(resolved.modalities, self.epoch + 1))
        for name, m in resolved.modalities.items():
            if m.freeze and m.unfreeze_at is not None and m.unfreeze_at > self.epochs:
                self.note(f"modalities.{name}.unfreeze_at={m.unfreeze_at} is after the last "
                          f"epoch ({self.epochs}): the {name} encoder stays frozen")
        self.net = strategy.wrap(model)

    def _train_epochs(self) -> None:
        """The epochs left, until the last, early stopping or :meth:`stop`."""
        assert self.monitor is not None and self.epochs is not None
        self.hooks.hook.on_train_start(trainer=self)
        epochs_bar = tqdm(
            total=self.epochs, initial=self.epoch, desc="epochs", unit="epoch",
            disable=not self.show_progress, file=sys.stderr, dynamic_ncols=True,
        )
        try:
            while self.epoch < self.epochs and not self.stopped_early and not self._stop:
                record = self._run_epoch(self.epoch + 1)
                # a callback on the main process may have called stop() or stopped early
                self._stop, self.stopped_early = self.strategy.broadcast(
                    (self._stop, self.stopped_early))
                epochs_bar.update(1)
                shown = {"loss": f"{record[f'{TRAIN}/loss']:.4g}"}  # at least once an epoch
                value = record.get(self.monitor.key)
                if value is not None:
                    shown[self.monitor.name] = f"{value:.4g}"
                epochs_bar.set_postfix(shown)
        finally:
            epochs_bar.close()

    def _check_encoders(self, model: MultimodalModel, spec: Spec) -> None:
        """Each encoder once on a few real training rows, so one whose output differs from
        what it declares is named now rather than as a shape error in the fusion later."""
        rows = min(DRY_RUN_ROWS, self.spec.train.batch_size)
        loader = self.data.loader(TRAIN, batch_size=rows, shuffle=False)
        batch = next(iter(loader), None)
        if batch is not None:
            check_encoders(model, {k: v.to(self.device) for k, v in batch.inputs.items()}, spec)

    def _loader(self, split: str, *, shuffle: bool, epoch: int = 0, start_batch: int = 0):
        """This process's share of every global batch of ``split``."""
        train = self.spec.train
        return self.data.loader(
            split, batch_size=self.strategy.local_batch_size(train.batch_size),
            shuffle=shuffle, seed=train.seed, epoch=epoch, num_workers=train.num_workers,
            pin_memory=self.device.type == "cuda", start_batch=start_batch,
            balanced=shuffle and train.sampler == "balanced", **self.strategy.shard_args(),
        )

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training split (the rest of it, resuming a mid-epoch
        checkpoint); returns row-averaged losses."""
        model, optimizer, progress = self.model, self.optimizer, self.progress
        assert model is not None and optimizer is not None
        train = self.spec.train
        self._apply_freezing(epoch)
        batches, total = self._epoch_batches(epoch, progress.resume_batch)
        progress.begin(epoch, total=total, heads=len(model.heads), step=self.step,
                       seed=self.strategy.seed_epoch(dropout_seed(train.seed, epoch)),
                       accumulate=train.accumulate, device=self.device)
        params = [p for p in model.parameters() if p.requires_grad]
        model.train()
        optimizer.zero_grad(set_to_none=True)
        bar = tqdm(
            batches, total=total, initial=progress.start, desc=f"epoch {epoch}", unit="batch",
            leave=False, disable=not self.show_progress, file=sys.stderr, dynamic_ncols=True,
        )
        for batch in bar:
            stepped = self._train_step(batch, progress, params)
            if progress.batch % LOG_EVERY == 0:
                progress.flush(self.last_checkpoint)
                if self.show_progress:
                    bar.set_postfix(loss=f"{progress.running_loss():.4f}")
            if stepped and self._step_checkpoint_due(progress):
                progress.flush(self.last_checkpoint)
                save_checkpoint(self, epoch, progress)
        bar.close()
        progress.flush(self.last_checkpoint)
        return progress.means(list(model.heads), self.strategy.sum_rows)

    def _epoch_batches(self, epoch: int, start: int) -> tuple[Iterator[Any], int]:
        """This process's batches of the training split in ``epoch`` from batch ``start``,
        and how many batches the epoch has."""
        loader = self._loader(TRAIN, shuffle=True, epoch=epoch, start_batch=start)
        try:
            total = start + len(loader)
        except TypeError:
            total = math.ceil(self.data.num_rows(TRAIN) / self.spec.train.batch_size)
        # starting the loader draws its base seed from torch's generator: before a resumed
        # epoch restores it (EpochProgress.begin)
        batches = iter(loader)
        if self.data.streaming:  # streamed shards may differ in length
            batches = self.strategy.together(batches)
        return batches, total

    def _train_step(self, batch: Any, progress: EpochProgress,
                    params: list[torch.nn.Parameter]) -> bool:
        """Forward and backward one batch, count its losses in ``progress`` and, when it
        ends an accumulation window (gradients are exchanged only then), step the optimizer
        on ``params``; returns whether it stepped."""
        model, net, scaler, train = self.model, self.net, self.scaler, self.spec.train
        assert model is not None and net is not None
        inputs = {k: self.data.modalities[k].augment(v, progress.augment)
                  for k, v in batch.inputs.items()}
        if train.modality_dropout > 0:
            inputs = modality_dropout(inputs, train.modality_dropout, progress.dropout)
        targets = batch.targets
        if self.device.type != "cpu":  # batches are built on the CPU
            inputs = {k: v.to(self.device, non_blocking=True) for k, v in inputs.items()}
            targets = {k: v.to(self.device, non_blocking=True) for k, v in targets.items()}
        ends_window, window = progress.window()
        with self.strategy.sync_gradients(net, ends_window):
            total, losses = weighted_loss(model, self._forward(inputs), targets, self.weights)
            if train.modality_loss > 0:
                total = total + train.modality_loss * alone_loss(
                    self._forward, model, inputs, targets, self.weights).to(total.device)
            scaled = total / window
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
        progress.add(torch.stack([total, *losses]).detach(), len(batch))
        if ends_window:
            self._optimizer_step(params)
        return ends_window

    def _step_checkpoint_due(self, progress: EpochProgress) -> bool:
        """Whether the optimizer step just taken is one of ``train.checkpoint_every``'s,
        inside the epoch (its end has its own checkpoint)."""
        every = self.spec.train.checkpoint_every
        if not every:
            return False
        return self.step % every == 0 and progress.batch < progress.total

    def _apply_freezing(self, epoch: int) -> None:
        """Freeze and unfreeze the encoders as ``freeze``/``unfreeze_at`` say for ``epoch``;
        the strategy re-wraps the model when its trainable parameters change."""
        model, optimizer = self.model, self.optimizer
        assert model is not None and optimizer is not None
        frozen = frozen_encoders(self.spec.modalities, epoch)
        if frozen == model.frozen:
            return
        thawed = sorted(model.frozen - frozen)
        set_frozen(model, optimizer, frozen)
        self.net = self.strategy.wrap(model)
        if thawed:
            self.note(f"epoch {epoch}: unfreezing the {', '.join(thawed)} encoder(s)")

    def _optimizer_step(self, params: list[torch.nn.Parameter]) -> None:
        """Clip, step (through the fp16 scaler, if any), clear the gradients, advance the
        schedule and the step count."""
        optimizer, scaler, scheduler = self.optimizer, self.scaler, self.scheduler
        assert optimizer is not None and scheduler is not None
        if scaler is not None:
            scaler.unscale_(optimizer)
        if self.spec.train.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, self.spec.train.grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        self.step += 1

    def evaluate(self, split: str, transform: Transform | None = None) -> SplitResult:
        """Figures over the whole split with the model as it is, its inputs passed through
        ``transform`` if given; every process must call it (each evaluates its shard)."""
        assert self.model is not None
        return evaluate_model(
            self.model, self._loader(split, shuffle=False), device=self.device,
            weights=self.weights, precision=self.spec.train.precision, transform=transform,
            strategy=self.strategy, batch_size=self.spec.train.batch_size,
            dedupe=not self.data.streaming,
        )

    def _run_epoch(self, epoch: int) -> dict[str, Any]:
        assert self.monitor is not None and self.optimizer is not None
        started = time.perf_counter()
        train_metrics = self._train_epoch(epoch)
        record: dict[str, Any] = {
            "epoch": epoch,
            "step": self.step,
            "lr": self.optimizer.param_groups[0]["lr"],
        }
        record.update({f"{TRAIN}/{k}": v for k, v in train_metrics.items()})
        if self.has_validation:
            record.update(
                {f"{VALIDATION}/{k}": v for k, v in self.evaluate(VALIDATION).metrics.items()}
            )
        record["seconds"] = round(time.perf_counter() - started, 3)
        # the main process's figures decide best epoch and stopping for all
        record = self.strategy.broadcast(record)
        value = record.get(self.monitor.key, float("nan"))
        improved = self.monitor.better(value, self.best_value)
        if improved:
            self.best_epoch, self.best_value = epoch, value
        self.epoch = epoch
        self.history.append(record)
        self.hooks.hook.on_validation_end(trainer=self, epoch=epoch, metrics=dict(record),
                                          improved=improved)
        path = save_checkpoint(self, epoch)
        self.strategy.on_main(lambda: self._after_epoch(path, improved, record))
        return record

    def _after_epoch(self, path: Path, improved: bool, record: dict[str, Any]) -> None:
        """The main process's writes after an epoch's checkpoint: the run's records (best
        weights, pruning, metrics.jsonl), then the callbacks."""
        record_epoch(self.run, path, self.history, best_info(self, path) if improved else None)
        self.hooks.hook.on_checkpoint_saved(trainer=self, path=path)
        self.hooks.hook.on_epoch_end(trainer=self, epoch=record["epoch"], metrics=dict(record))

    def _forward(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The (wrapped) model's outputs under the run's precision."""
        with autocast_context(self.device, self.spec.train.precision):
            return self.net(inputs)  # type: ignore[misc]

    def _finish(self) -> dict[str, Any]:
        """Evaluate the best weights on validation and test (``train.final_test``), write
        metrics.json, then the callbacks' ``on_train_end``."""
        assert self.model is not None and self.monitor is not None
        self.strategy.barrier()  # until the main process has written the best weights
        self.strategy.load_model_state(self.model, ck.load_tensors(self.run.model),
                                       self.run.model)
        final: dict[str, Any] = {
            "best_epoch": self.best_epoch,
            "monitor": self.monitor.name,
            "best_value": self.best_value,
            "epochs": self.epoch,
            "stopped_early": self.stopped_early,
        }
        results: dict[str, SplitResult] = {}
        splits = (VALIDATION, TEST) if self.spec.train.final_test else (VALIDATION,)
        for split in splits:
            if split in self.data.splits and self.data.num_rows(split) > 0:
                results[split] = self.evaluate(split)
                final[split] = results[split].metrics
        self.strategy.on_main(lambda: ck.atomic_write_json(self.run.metrics_json, final))
        if self.data.bad_rows:  # the data module wrote them to the run folder
            self.note(f"{len(self.data.bad_rows)} bad row(s) left out: see {self.run.bad_rows}")
        self.final_metrics, self.final_results = final, results
        flat = {
            f"{split}/{k}": v
            for split in (VALIDATION, TEST)
            for k, v in final.get(split, {}).items()
        }
        # the built-in callbacks write the modality report, plots and card, then the summary
        self.hooks.hook.on_train_end(trainer=self, metrics=flat)
        return final


#: :func:`mmcore.train.callbacks.summary.summary` where ``mmcore train`` imports it from
summary = run_summary
