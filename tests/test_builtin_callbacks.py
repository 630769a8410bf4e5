"""The trainer's side jobs as built-in callbacks: which are on, the order their ends run in,
early stopping through ``on_validation_end`` (saved with the checkpoint, kept on resume), and
a user's callback doing what the built-in ones do."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest

import mmcore
from mmcore.plugins.default import get_registry
from mmcore.run import checkpoint as ck
from mmcore.spec import validate_spec
from mmcore.train import Trainer
from mmcore.train.callbacks import progress as progress_callback
from mmcore.train.callbacks import silent_hooks
from mmcore.train.callbacks.defaults import (
    BUILTIN,
    default_callbacks,
    every_process_callbacks,
    trainer_hooks,
)
from mmcore.train.callbacks.early_stopping import EarlyStopping
from mmcore.train.callbacks.progress import ProgressBars, shows_bars
from mmcore.train.callbacks.wiring import per_batch
from tests import train_toy as toy

pytestmark = pytest.mark.usefixtures("one_thread")


def _spec(tmp_path, reg, **train):
    data = toy.write_data(tmp_path / "data" / "data.csv")
    return validate_spec(toy.spec_dict(data, tmp_path / "cache", **train), registry=reg)


def test_every_builtin_is_registered_by_name_as_a_users_callback_would_be():
    registry = get_registry()
    for name, cls in BUILTIN.items():
        assert registry.get("callback", name).load() is cls


def test_the_trainer_flags_choose_the_builtins_and_a_named_one_is_not_added_twice():
    def names(named=(), **flags):
        on = dict(report=True, plots=True, summary=True, log=True) | flags
        return [name for name, _ in default_callbacks(named, **on)]

    assert names() == list(BUILTIN)
    assert names(report=False, plots=False, summary=False, log=False) == [
        "early_stopping", "card", "health"]
    # named in train.callbacks: on whatever the flag says, in its place in the order
    assert names(["modality_report", "plots"], report=False, plots=False) == list(BUILTIN)
    assert "log" not in names(["log"])  # the spec's list registers it
    assert [n for n, _ in every_process_callbacks([], report=True)] == ["modality_report"]
    assert every_process_callbacks([], report=False) == []
    assert every_process_callbacks(["modality_report"], report=False) != []


def test_the_other_processes_run_only_the_builtins_every_process_needs(reg):
    spec = SimpleNamespace(train=SimpleNamespace(callbacks=["csv"]))
    trainer = SimpleNamespace(report=True, plots=True, summary=True, show_progress=False,
                              quiet=False, spec=spec, registry=reg, callbacks=[Last()])
    other = trainer_hooks(trainer, main=False)
    assert [n for n, _ in other.list_name_plugin()] == ["callback:modality_report"]
    main = {n for n, _ in trainer_hooks(trainer, main=True).list_name_plugin()}
    assert {"callback:csv:0", "callback:object:0", "callback:log", "callback:plots"} <= main
    trainer.report = False
    assert trainer_hooks(trainer, main=False).list_name_plugin() == []
    # a built-in named in the spec is registered once, by the trainer, in its order
    spec.train.callbacks = ["csv", "modality_report", "log"]
    main = [n for n, _ in trainer_hooks(trainer, main=True).list_name_plugin()]
    assert main.count("callback:modality_report") == 1 and "callback:log:2" in main
    assert not any(n.startswith("callback:modality_report:") for n in main)
    assert trainer_hooks(trainer, main=False).list_name_plugin() != []


class Last:
    @mmcore.hookimpl
    def on_train_end(self, trainer, metrics):
        pass


def test_the_ends_of_a_run_go_report_health_plots_card_others_summary():
    hooks = silent_hooks()
    for name, callback in default_callbacks([], report=True, plots=True, summary=True,
                                            log=True):
        hooks.register(callback, name=name)
    hooks.register(Last(), name="user")
    called = [impl.plugin_name for impl in reversed(hooks.hook.on_train_end.get_hookimpls())]
    assert called == ["modality_report", "health", "plots", "card", "user", "summary"]
    called = [impl.plugin_name for impl in reversed(hooks.hook.on_epoch_end.get_hookimpls())]
    assert called == ["log", "early_stopping"]
    hookimpls = hooks.hook.on_validation_end.get_hookimpls()
    assert [impl.plugin_name for impl in reversed(hookimpls)] == ["health", "early_stopping"]


def test_early_stopping_decides_on_patience_and_says_so_after_the_epoch_line():
    notes = []
    trainer = SimpleNamespace(spec=SimpleNamespace(train=SimpleNamespace(early_stopping=2)),
                              bad_epochs=1, stopped_early=False, best_epoch=1,
                              monitor=SimpleNamespace(name="label.accuracy"), note=notes.append)
    callback = EarlyStopping()
    callback.on_validation_end(trainer, 2, {}, False)
    callback.on_epoch_end(trainer, 2, {})
    assert not trainer.stopped_early and notes == []
    trainer.bad_epochs = 2
    callback.on_validation_end(trainer, 3, {}, False)
    callback.on_epoch_end(trainer, 3, {})
    assert trainer.stopped_early
    assert notes == ["early stopping after epoch 3: label.accuracy has not improved for 2 "
                     "epochs (best: epoch 1)"]
    trainer.spec.train.early_stopping = None
    trainer.stopped_early = False
    callback.on_validation_end(trainer, 4, {}, False)
    assert not trainer.stopped_early


class StopAtTwo:
    """A user's early stopping: what the built-in one does, on its own rule."""

    def __init__(self):
        self.seen = []

    @mmcore.hookimpl
    def on_validation_end(self, trainer, epoch, metrics, improved):
        self.seen.append((epoch, improved, trainer.best_epoch, "train/loss" in metrics))
        if epoch == 2:
            trainer.stopped_early = True


def test_a_users_on_validation_end_stops_the_run_and_the_checkpoint_keeps_it(tmp_path, reg):
    spec = _spec(tmp_path, reg, epochs=5)
    stop = StopAtTwo()
    trainer = Trainer(spec, output=tmp_path / "run", registry=reg, plots=False, report=False,
                      quiet=True, callbacks=[stop])
    final = trainer.fit()
    assert final["stopped_early"] and final["epochs"] == 2
    assert [s[0] for s in stop.seen] == [1, 2] and stop.seen[0][1:] == (True, 1, True)
    state = ck.read_checkpoint(tmp_path / "run/checkpoints/epoch-0002").state
    assert state["stopped_early"] is True
    assert state["bad_epochs"] == 2 - state["best_epoch"]
    assert json.loads((tmp_path / "run/metrics.json").read_text())["stopped_early"] is True
    # resuming the stopped run trains no further epoch
    again = Trainer(spec, output=tmp_path / "run", registry=reg, plots=False, report=False,
                    quiet=True, resume=True).fit()
    assert again["epochs"] == 2 and again["stopped_early"]


def test_switched_off_builtins_write_nothing_and_the_defaults_write_their_files(tmp_path, reg):
    spec = _spec(tmp_path, reg, epochs=2)
    off = Trainer(spec, output=tmp_path / "off", registry=reg, plots=False, report=False,
                  summary=False, quiet=True)
    off.fit()
    assert off.modality_report is None and not (tmp_path / "off/modality_report.json").exists()
    assert not (tmp_path / "off/drift_reference.json").exists()
    assert (tmp_path / "off/README.md").is_file() and off.health is not None
    on = Trainer(spec, output=tmp_path / "on", registry=reg, plots=False, quiet=True)
    on.fit()
    assert on.modality_report is not None
    assert json.loads((tmp_path / "on/modality_report.json").read_text()) == on.modality_report
    assert (tmp_path / "on/drift_reference.json").is_file()


def test_the_bars_show_where_they_render_unless_quiet_or_told_not_to(monkeypatch):
    monkeypatch.setattr(progress_callback, "bars_render", lambda: False)
    assert not shows_bars(True, None, False, True)  # no terminal: the epoch lines instead
    assert shows_bars(True, True, False, True)  # Trainer(progress=True) forces them
    monkeypatch.setattr(progress_callback, "bars_render", lambda: True)
    assert shows_bars(True, None, False, True)
    assert not shows_bars(False, None, False, True)  # train.progress=false
    assert not shows_bars(True, False, False, True)
    assert not shows_bars(True, None, True, True)  # quiet
    assert not shows_bars(True, True, False, False)  # not the main process


def test_the_bars_are_registered_only_where_they_show(reg):
    spec = SimpleNamespace(train=SimpleNamespace(callbacks=[]))
    trainer = SimpleNamespace(report=False, plots=False, summary=False, show_progress=True,
                              quiet=False, spec=spec, registry=reg, callbacks=[])
    names = [n for n, _ in trainer_hooks(trainer, main=True).list_name_plugin()]
    assert "callback:progress" in names and "callback:log" not in names
    trainer.show_progress = False
    names = [n for n, _ in trainer_hooks(trainer, main=True).list_name_plugin()]
    assert "callback:progress" not in names and "callback:log" in names


def test_the_bars_close_when_the_epochs_end_however_they_end(capsys):
    hooks = silent_hooks()
    bars = ProgressBars()
    hooks.register(bars, name="progress")
    trainer = SimpleNamespace(epochs=3, epoch=0, stopped_early=False,
                              progress=SimpleNamespace(start=0, total=5, running_loss=lambda: 0.5),
                              monitor=SimpleNamespace(name="loss", key="validation/loss"))

    def epoch(n, batches=5):
        hooks.hook.on_train_epoch_start(trainer=trainer, epoch=n)
        for batch in range(1, batches + 1):
            hooks.hook.on_train_batch_end(trainer=trainer, batch=batch)
            if batch == 5:  # the epoch's last batch closed its bar
                assert bars.batches is None
        hooks.hook.on_validation_end(trainer=trainer, epoch=n, metrics={}, improved=True)
        assert bars.batches is None  # a streamed epoch can end short of its estimated batches
        trainer.epoch = n
        hooks.hook.on_epoch_end(trainer=trainer, epoch=n, metrics={"train/loss": 0.5})

    hooks.hook.on_train_start(trainer=trainer)
    epoch(1, batches=2)
    assert bars.epochs.n == 1
    # trainer.stop() leaves nothing the bars can read: on_train_end closes them
    hooks.hook.on_train_end(trainer=trainer, metrics={})
    assert bars.epochs is None
    assert re.search(r"epochs:  33%[^\r]*1/3 [^\r]*, loss=0.5\] *\n$", capsys.readouterr().err)
    trainer.epoch = 0
    hooks.hook.on_train_start(trainer=trainer)
    epoch(1)
    trainer.stopped_early = True
    epoch(2)
    assert bars.epochs is None  # closed after the epoch that stopped early
    assert re.search(r"epochs:  67%[^\r]*2/3 [^\r]*\] *\n$", capsys.readouterr().err)
    hooks.hook.on_train_start(trainer=trainer)
    hooks.hook.on_train_epoch_start(trainer=trainer, epoch=1)
    hooks.hook.on_exception(trainer=trainer, error=RuntimeError("boom"))
    assert bars.epochs is None and bars.batches is None


def test_a_per_batch_event_nobody_implements_costs_no_pluggy_call():
    hooks = silent_hooks()
    relay = hooks.hook.on_train_batch_end
    assert per_batch(hooks, "on_train_batch_end") is not relay
    per_batch(hooks, "on_train_batch_end")(trainer=None, batch=1)
    hooks.register(ProgressBars(), name="progress")
    assert per_batch(hooks, "on_train_batch_end") is relay
