"""End-to-end training of a spec: ``Trainer(spec).fit()``.

Every encoder, the fusion and every head are optimised together on the weighted sum of the
heads' losses. Each epoch is validated, checkpointed (see :mod:`mmcore.run.checkpoint`) and
logged; the best epoch by ``train.monitor`` gives the run's ``model.safetensors``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from mmcore.distributed.selection import select_strategy
from mmcore.encoder import recurring_inputs
from mmcore.evaluate.split import (
    SplitResult,
    Transform,
    autocast_context,
    evaluate_kept,
    evaluate_model,
)
from mmcore.log import note as log_note
from mmcore.model import MultimodalModel, build_modalities
from mmcore.plugins.default import get_registry
from mmcore.plugins.registry import Registry
from mmcore.run.layout import RunFolder, default_run_dir
from mmcore.run.lock import RunLock
from mmcore.spec.model import Spec
from mmcore.strategy import Strategy
from mmcore.train.batches import epoch_batches, step_data
from mmcore.train.callbacks.defaults import trainer_hooks
from mmcore.train.callbacks.progress import shows_bars
from mmcore.train.callbacks.wiring import per_batch
from mmcore.train.epoch_state import LOG_EVERY, EpochProgress, dropout_seed
from mmcore.train.final_evaluation import final_evaluation, flat_metrics
from mmcore.train.health import HealthChecks
from mmcore.train.members import model_parts
from mmcore.train.modality_loss import step_loss
from mmcore.train.optim import apply_freezing, optimizer_step
from mmcore.train.refused_writes import refused_writes_reported
from mmcore.train.run_setup import (
    build_training,
    checked_spec,
    set_up_process,
    set_up_run,
    set_up_run_data,
    torch_settings_kept,
)
from mmcore.train.settings import TRAIN, VALIDATION, Monitor
from mmcore.train.trainer_state import after_epoch, save_checkpoint
from mmcore.train.weight_average import WeightAverage


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
        plots: turn on the ``plots`` callback (training curves and confusion matrices drawn
            at the end, when matplotlib is installed). Off by default in Python, where runs
            are often made in a loop; ``mmcore train`` turns it on (``--no-plots`` off), and
            ``mmcore plots RUN`` draws them later from any run folder
            (:mod:`mmcore.train.plots`).
        report: turn on the ``modality_report`` callback (after training, the best model
            with each modality hidden and alone, ``modality_report.json``).
        summary: turn on the ``summary`` callback (the run's summary as a note at the end;
            ``mmcore train`` prints its own).
        callbacks: objects with ``@mmcore.hookimpl`` trainer events, called beside the spec's
            ``train.callbacks`` (on rank 0); one may call :meth:`stop`.
        registry: the plugin registry (default: the process-wide one).
        trust_code: with ``spec`` a ``spec.json`` path, let it name classes in any module
            and a fusion in a Python file (else only mmcore's and installed plugins' modules).

    After :meth:`fit` the attributes ``model``, ``optimizer``, ``scheduler``, ``resolved_spec``,
    ``history`` (one dict per epoch), ``best_epoch``, ``best_value`` and ``final_metrics`` are
    set. Callbacks get the trainer and may read these, plus ``run_dir``, ``epoch`` (the last
    finished epoch), ``step`` (optimizer steps so far), ``bad_epochs`` (since the best),
    ``monitor``, ``data``, ``progress`` (the epoch being trained, its ``batch`` and ``total``:
    :class:`~mmcore.train.epoch_state.EpochProgress`), ``average`` (``train.ema``'s
    :class:`~mmcore.train.weight_average.WeightAverage`) and, at the end, ``final_results`` (each
    evaluated split's :class:`~mmcore.evaluate.split.SplitResult`); setting
    ``stopped_early`` ends training after the epoch. The built-in callbacks
    (:mod:`mmcore.train.callbacks`) set ``health`` (the run's health warnings,
    ``health.json``) and ``modality_report``.

    Started by ``torchrun`` (``WORLD_SIZE`` > 1), it trains on ``world_size`` processes with
    the ``train.strategy`` (DDP or FSDP, :mod:`mmcore.distributed`), ``train.batch_size``
    being the global batch; rank 0 alone writes the run folder, shows progress and calls the
    callbacks. ``strategy`` holds the processes' collective steps (:mod:`mmcore.strategy`);
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
        plots: bool = False,
        report: bool = True,
        summary: bool = True,
        callbacks: Iterable[object] = (),
        registry: Registry | None = None,
        trust_code: bool = False,
    ) -> None:
        self.registry = registry or get_registry()
        self.spec: Spec = checked_spec(spec, overrides, self.registry, trust_code)
        spec = self.spec
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
        #: the test split's input drift per modality (two or more modalities, report on)
        self.test_drift: dict[str, Any] | None = None
        self.health: HealthChecks | None = None  # set by the health callback
        self.show_progress = shows_bars(spec.train.progress, progress, quiet, self.is_main)
        self.summary = summary
        self.callbacks = list(callbacks)
        self._stop = False
        self.model: MultimodalModel | None = None
        self.net: torch.nn.Module | None = None  # what the training forward calls
        self.weights: dict[str, float] = {}  # the heads' loss weights
        self.has_validation = False
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
        #: groups of kept modalities the final pass over test also evaluates (a callback adds
        #: its own in ``on_train_start``, finds their results in ``final_subsets`` at the end)
        self.final_groups: list[frozenset[str]] = []
        self.final_subsets: dict[str, dict[frozenset[str], SplitResult]] = {}
        #: the best epoch's validation pass (this session's), which the calibration reuses
        self.best_validation: SplitResult | None = None
        #: evaluations also measure the feature statistics (``SplitResult.features``: drift)
        self.feature_statistics = False
        self.last_checkpoint: Path | None = None
        self.progress = EpochProgress()  # where the epoch being trained is
        self.average = WeightAverage(None)  # train.ema's, resolved with the data's size

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
        failed = True
        with torch_settings_kept():
            try:
                with refused_writes_reported(self.run.path):
                    set_up_process(self)
                    final = self._fit()
                failed = False
                return final
            finally:
                self.lock.release()
                self.strategy.close(failed=failed)

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

    # -- set-up ---------------------------------------------------------------------------
    def _fit(self) -> dict[str, Any]:
        """The run on this process: set up (its folder, seeds and callbacks, the data, the
        model and optimizer; :mod:`mmcore.train.run_setup`), the epochs, then the end."""
        resume_from = set_up_run(self)
        # the callbacks run on the main process; the others run only what needs them all
        self.hooks = (self.strategy.on_main(lambda: trainer_hooks(self, main=True))
                      or trainer_hooks(self, main=False))
        try:
            modalities = build_modalities(self.spec, self.registry)
            resolved = set_up_run_data(self, modalities, resume_from)
            build_training(self, resolved, modalities, resume_from)
            self._train_epochs()
            return self._finish()
        except BaseException as error:  # Ctrl-C too: the progress bars close before it shows
            self.hooks.hook.on_exception(trainer=self, error=error)
            raise

    # -- the epochs -----------------------------------------------------------------------
    def _train_epochs(self) -> None:
        """The epochs left, until the last, early stopping or :meth:`stop`."""
        assert self.epochs is not None
        self.hooks.hook.on_train_start(trainer=self)
        # what the main process's callbacks asked of the evaluations, on every process (each
        # evaluation is a collective)
        self.final_groups, self.feature_statistics = self.strategy.broadcast(
            (self.final_groups, self.feature_statistics))
        while self.epoch < self.epochs and not self.stopped_early and not self._stop:
            self._run_epoch(self.epoch + 1)
            # a callback on the main process may have called stop() or stopped early
            self._stop, self.stopped_early = self.strategy.broadcast(
                (self._stop, self.stopped_early))

    def _run_epoch(self, epoch: int) -> None:
        assert self.monitor is not None and self.optimizer is not None
        started = time.perf_counter()
        train_metrics = self._train_epoch(epoch)
        record: dict[str, Any] = {"epoch": epoch, "step": self.step,
                                  "lr": self.optimizer.param_groups[0]["lr"]}
        record.update({f"{TRAIN}/{k}": v for k, v in train_metrics.items()})
        validation = None
        if self.has_validation:
            with self.average.applied(self.model), recurring_inputs():  # every epoch's
                # the buffers (BatchNorm's statistics) the checkpoint saves: the main process's
                self.strategy.share_buffers(self.model)
                validation = self.evaluate(VALIDATION)
            record.update({f"{VALIDATION}/{k}": v for k, v in validation.metrics.items()})
        record["seconds"] = round(time.perf_counter() - started, 3)
        # the main process's figures decide best epoch and stopping for all
        record = self.strategy.broadcast(record)
        best = next((r for r in self.history if r.get("epoch") == self.best_epoch), None)
        improved = self.monitor.improves(record, best if self.best_value is not None else None)
        if improved:
            self.best_epoch = epoch
            self.best_value = record.get(self.monitor.key, float("nan"))
            self.best_validation = validation
        self.epoch = epoch
        self.history.append(record)
        self.hooks.hook.on_validation_end(trainer=self, epoch=epoch, metrics=dict(record),
                                          improved=improved)
        path = save_checkpoint(self, epoch)
        self.strategy.on_main(lambda: after_epoch(self, path, improved, record))

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training split (the rest of it, resuming a mid-epoch
        checkpoint); returns row-averaged losses."""
        model, optimizer, progress = self.model, self.optimizer, self.progress
        assert model is not None and optimizer is not None
        train = self.spec.train
        apply_freezing(self, epoch)
        batches, total = epoch_batches(self, epoch, progress.resume_batch)
        progress.begin(epoch, total=total, heads=len(model.heads), step=self.step,
                       seed=self.strategy.seed_epoch(dropout_seed(train.seed, epoch)),
                       accumulate=train.accumulate, device=self.device)
        params = [[p for p in part.parameters() if p.requires_grad]
                  for part in model_parts(model)]  # clipped apart (an ensemble's members)
        model.train()
        optimizer.zero_grad(set_to_none=True)
        self.hooks.hook.on_train_epoch_start(trainer=self, epoch=epoch)
        batch_end = per_batch(self.hooks, "on_train_batch_end")
        for batch in batches:
            stepped = self._train_step(batch, progress, params)
            if progress.batch % LOG_EVERY == 0:
                progress.flush(self.last_checkpoint)
            if stepped and progress.checkpoint_due(self.step, train.checkpoint_every):
                progress.flush(self.last_checkpoint)
                save_checkpoint(self, epoch, progress)
            batch_end(trainer=self, batch=progress.batch)
        progress.flush(self.last_checkpoint)
        return progress.means(list(model.heads), self.strategy.sum_rows)

    def _train_step(self, batch: Any, progress: EpochProgress,
                    params: list[list[torch.nn.Parameter]]) -> bool:
        """Forward and backward one batch, count its losses in ``progress`` and, when it
        ends an accumulation window (gradients are exchanged only then), step the optimizer
        on ``params``; returns whether it stepped."""
        model, net, scaler, train = self.model, self.net, self.scaler, self.spec.train
        assert model is not None and net is not None
        inputs, targets, rows = step_data(self, batch, progress)
        ends_window, window = progress.window()
        with self.strategy.sync_gradients(net, ends_window):
            objective, logged = step_loss(model, self._forward, inputs, targets, self.weights,
                                          train.modality_loss)
            scaled = objective / window if window != 1 else objective  # x / 1 is x: no node
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
        progress.add(logged.detach(), rows)
        if ends_window:
            self._optimizer_step(params)
        return ends_window

    def _forward(self, inputs: Any, **kwargs: Any) -> Any:
        """The (wrapped) model's outputs under the run's precision (``kwargs``: ``alone``, see
        :meth:`MultimodalModel.forward`; ``members``, :meth:`EnsembleModel.forward`)."""
        net = self.net
        assert net is not None
        if self.spec.train.precision == "32":  # autocast_context is a no-op: not entered
            return net(inputs, **kwargs)
        with autocast_context(self.device, self.spec.train.precision):
            return net(inputs, **kwargs)

    def _optimizer_step(self, params: list[list[torch.nn.Parameter]]) -> None:
        """Clip, step (through the fp16 scaler, if any), clear the gradients, advance the
        schedule, the weights' average (``train.ema``) and the step count."""
        assert self.optimizer is not None and self.scheduler is not None
        optimizer_step(self.optimizer, self.scheduler, self.scaler, params,
                       self.spec.train.grad_clip)
        self.average.update(self.model)
        self.step += 1

    # -- the end --------------------------------------------------------------------------
    def _finish(self) -> dict[str, Any]:
        """The best weights evaluated (``metrics.json``), then the callbacks' ``on_train_end``
        (the built-ins': the modality report, plots and card, then the summary)."""
        self.final_metrics, self.final_results = final_evaluation(self)
        self.hooks.hook.on_train_end(trainer=self, metrics=flat_metrics(self.final_metrics))
        return self.final_metrics

    # -- evaluation -----------------------------------------------------------------------
    def evaluate(self, split: str, transform: Transform | None = None) -> SplitResult:
        """Figures over the whole split with the model as it is, its inputs passed through
        ``transform`` if given; every process must call it (each evaluates its shard)."""
        assert self.model is not None
        return evaluate_model(self.model, self._evaluation_loader(split), transform=transform,
                              **self._evaluation())

    def evaluate_kept(self, split: str, groups: list[frozenset[str]]) -> list[SplitResult]:
        """Figures over the whole split with only each group of modalities kept (the others
        hidden from every row), from one pass of the encoders; every process must call it."""
        assert self.model is not None
        return evaluate_kept(self.model, self._evaluation_loader(split), groups,
                             **self._evaluation())

    def _evaluation(self) -> dict[str, Any]:
        """How this run evaluates; the feature statistics when asked, in float32 only (as
        the training split's reference is measured; autocast would round the features)."""
        train = self.spec.train
        return {"device": self.device, "weights": self.weights, "precision": train.precision,
                "strategy": self.strategy, "batch_size": train.batch_size,
                "dedupe": not self.data.streaming,
                "statistics": self.feature_statistics and train.precision == "32"}

    def _evaluation_loader(self, split: str):
        """This process's share of ``split`` in order, in batches of ``train.eval_batch``."""
        return self._loader(split, shuffle=False,
                            batch_size=self.spec.train.eval_batch(self.device.type))

    def _loader(self, split: str, *, shuffle: bool, epoch: int = 0, start_batch: int = 0,
                seed: int | None = None, batch_size: int | None = None):
        """This process's share of every global batch (``batch_size``, default
        ``train.batch_size``) of ``split`` (in the order of ``seed``, default ``train.seed``)."""
        train = self.spec.train
        return self.data.loader(
            split, batch_size=self.strategy.local_batch_size(batch_size or train.batch_size),
            shuffle=shuffle, seed=train.seed if seed is None else seed, epoch=epoch,
            num_workers=train.num_workers, pin_memory=self.device.type == "cuda",
            start_batch=start_batch,
            balanced=shuffle and train.sampler == "balanced", **self.strategy.shard_args(),
        )
