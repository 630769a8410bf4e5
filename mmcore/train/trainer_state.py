"""What a checkpoint keeps of a trainer, and how a resume puts it back (as Lightning's
checkpoint connector does): the model, optimizer, scheduler and scaler states, the loop's
counters and best epoch, each process's random states, with ``train.ema`` the weights being
trained apart from the average in ``model.safetensors`` (:mod:`mmcore.train.weight_average`)
and, inside an epoch, the epoch's progress (:mod:`mmcore.train.epoch_state`). The files are
:mod:`mmcore.run.checkpoint`'s, the run's records beside them (best weights,
``metrics.jsonl``) :mod:`mmcore.train.records`'.
The trainer calls these functions on every process; the main process writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmcore.errors import CheckpointError
from mmcore.run import checkpoint as ck
from mmcore.run.state import capture_rng, restore_rng
from mmcore.train.epoch_state import EpochProgress
from mmcore.train.records import publish_best, record_epoch, write_history
from mmcore.train.weight_average import TRAINING_WEIGHTS


def save_checkpoint(trainer: Any, epoch: int, progress: EpochProgress | None = None) -> Path:
    """Write the trainer's checkpoint of the end of ``epoch`` or, with ``progress``, of its
    batches so far (a step checkpoint); returns its folder. Every process calls it; the main
    process writes."""
    assert trainer.model is not None and trainer.optimizer is not None
    assert trainer.monitor is not None
    tensors, training = _model_states(trainer)
    optimizer = trainer.strategy.optimizer_state(trainer.model, trainer.optimizer)
    batch = progress.batch if progress is not None else None
    state = {
        "epoch": epoch if batch is None else epoch - 1,  # finished epochs
        "step": trainer.step,
        "history": trainer.history,
        "best_epoch": trainer.best_epoch,
        "best_value": trainer.best_value,
        "monitor": trainer.monitor.name,
        "bad_epochs": trainer.bad_epochs,
        "stopped_early": trainer.stopped_early,
        "optimizer": optimizer,
        "scheduler": trainer.scheduler.state_dict(),
        "scaler": trainer.scaler.state_dict() if trainer.scaler is not None else None,
        "rng": capture_rng(),
        "world_size": trainer.world_size,
        "strategy": trainer.strategy.name,
    }
    if training is not None:
        state[TRAINING_WEIGHTS] = training
    # every process's own random states: a resume on as many processes restores each
    state["rng_ranks"] = trainer.strategy.gather(capture_rng())
    if progress is not None:
        state["partial"] = progress.step_checkpoint(trainer.strategy.gather, trainer.spec)

    def write() -> Path:
        path = ck.write_checkpoint(trainer.run.checkpoints, epoch, tensors, state, batch=batch)
        if batch is not None:  # epoch ends prune after publishing the best (record_epoch)
            ck.prune_checkpoints(trainer.run.checkpoints, ck.KEEP_LAST)
            trainer.hooks.hook.on_checkpoint_saved(trainer=trainer, path=path)
        return path

    path = trainer.strategy.on_main(write, share=True)
    assert path is not None
    trainer.last_checkpoint = path
    return path


def restore(trainer: Any, path: Path) -> None:
    """Load the checkpoint at ``path`` into the trainer's model, optimizer, scheduler, scaler,
    counters and RNGs; a mid-epoch checkpoint's epoch state waits in ``trainer.progress`` for
    its epoch. Every process calls it; the main one rewrites the run's records."""
    assert trainer.model is not None and trainer.optimizer is not None
    found = ck.read_checkpoint(path)
    strategy = trainer.strategy
    strategy.load_model_state(trainer.model, found.model, path / ck.MODEL_FILE)
    state = found.state
    _restore_training_weights(trainer, state, path)
    try:
        strategy.load_optimizer_state(trainer.model, trainer.optimizer, state["optimizer"])
        trainer.scheduler.load_state_dict(state["scheduler"])
        if trainer.scaler is not None and state.get("scaler"):
            trainer.scaler.load_state_dict(state["scaler"])
    except (KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"{path / ck.STATE_JSON}: the optimizer state does not fit this model or "
            f"train.optimizer ({type(exc).__name__}: {exc})"
        ) from None
    trainer.epoch = int(state["epoch"])
    trainer.step = int(state["step"])
    trainer.history = list(state["history"])
    trainer.best_epoch = state["best_epoch"]
    trainer.best_value = state["best_value"]
    trainer.stopped_early = bool(state["stopped_early"])
    trainer.last_checkpoint = path
    before = int(state.get("world_size", 1))
    # a step checkpoint's epoch state waits in the progress for the epoch to begin
    inside = trainer.progress.load_step_checkpoint(path, state, trainer.rank,
                                                   trainer.world_size, trainer.spec)
    # the run may have stopped between writing the best epoch's checkpoint and copying it
    republish = not inside and trainer.best_epoch == trainer.epoch
    strategy.on_main(lambda: _after_resume(trainer, path, republish))
    if not inside:
        ranks = state.get("rng_ranks") or []
        restore_rng(ranks[trainer.rank] if len(ranks) == trainer.world_size else state["rng"])
        trainer.note(f"resumed {trainer.run.path} after epoch {trainer.epoch} "
                     f"(step {trainer.step})")
    else:
        trainer.note(f"resumed {trainer.run.path} in epoch {trainer.epoch + 1} after "
                     f"{trainer.progress.resume_batch} of its batches (step {trainer.step})")
    if before != trainer.world_size:
        trainer.note(f"the run was trained on {before} process(es) so far, now on "
                     f"{trainer.world_size}: the global batch (train.batch_size) is unchanged")


def _model_states(trainer: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The checkpoint's ``model.safetensors`` tensors: the averaged weights with ``train.ema``
    (:mod:`mmcore.train.weight_average`), and then the weights being trained too, else
    the weights and ``None`` (collectives: every process calls it)."""
    model, strategy, average = trainer.model, trainer.strategy, trainer.average
    if not average.ready:
        return strategy.model_state(model), None
    training = strategy.model_state(model)
    with average.applied(model):
        return strategy.model_state(model), training


def _restore_training_weights(trainer: Any, state: dict[str, Any], path: Path) -> None:
    """After the checkpoint's ``model.safetensors`` is loaded: when the checkpoint keeps the
    weights being trained apart, it was the average (kept as such with ``train.ema``), and
    they go back into the model whatever ``train.ema`` says now (training continues from
    them). A run that had no average starts one at its next step."""
    training = state.get(TRAINING_WEIGHTS)
    if training is None:
        return
    if trainer.average.decay is not None:
        trainer.average.reset(trainer.model)
    trainer.strategy.load_model_state(trainer.model, training, path / ck.STATE_TENSORS)


def best_info(trainer: Any, checkpoint: Path) -> dict[str, Any]:
    """``best/best.json`` for the best epoch so far, whose checkpoint is ``checkpoint``."""
    assert trainer.monitor is not None
    return {"epoch": trainer.best_epoch, "monitor": trainer.monitor.name,
            "value": trainer.best_value, "checkpoint": checkpoint.name}


def _after_resume(trainer: Any, path: Path, republish: bool) -> None:
    """The main process's records after a resume: ``metrics.jsonl`` as the checkpoint has it,
    and the best weights again when the run stopped before copying them."""
    write_history(trainer.run, trainer.history)
    if republish:
        publish_best(trainer.run, path, best_info(trainer, path))


def after_epoch(trainer: Any, path: Path, improved: bool, record: dict[str, Any]) -> None:
    """The main process's writes after an epoch's checkpoint ``path``: the run's records (best
    weights, pruning, metrics.jsonl), then the callbacks."""
    record_epoch(trainer.run, path, trainer.history,
                 best_info(trainer, path) if improved else None)
    trainer.hooks.hook.on_checkpoint_saved(trainer=trainer, path=path)
    trainer.hooks.hook.on_epoch_end(trainer=trainer, epoch=record["epoch"], metrics=dict(record))
