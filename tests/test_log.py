"""The trainer's notes and run summary go through the ``mmcore`` logger (mmcore.log): plain
lines on stderr by default, a program's own logging configuration when it asks, nothing shown
when quiet; the progress bar shows the loss even for short epochs."""

from __future__ import annotations

import logging

import pytest

import mmcore.log
from mmcore.cli import main
from mmcore.plugins.default import reset_registry
from mmcore.spec import validate_spec
from mmcore.train import Trainer
from tests import train_toy as toy

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def spec(tmp_path):
    data = toy.write_data(tmp_path / "data" / "data.csv")
    raw = toy.spec_dict(data, tmp_path / "cache", epochs=2, callbacks=[])
    return validate_spec(raw, registry=toy.registry())


@pytest.fixture
def restore_logging():
    logger = mmcore.log.get_logger()
    handlers, propagate, level = list(logger.handlers), logger.propagate, logger.level
    yield
    logger.handlers[:] = handlers
    logger.propagate, logger.level = propagate, level


def test_fit_from_python_ends_with_a_one_screen_summary_on_stderr(spec, tmp_path, capsys):
    Trainer(spec, output=tmp_path / "r", registry=toy.registry(), plots=False).fit()
    err = capsys.readouterr().err
    assert f"run saved to {tmp_path / 'r'}" in err
    assert "best epoch: " in err and "\ntest: loss " in err and "modality report" in err


def test_quiet_shows_nothing_and_logs_at_debug(spec, tmp_path, capsys, caplog,
                                               restore_logging):
    Trainer(spec, output=tmp_path / "q", registry=toy.registry(), plots=False,
            quiet=True).fit()
    assert capsys.readouterr().err == ""
    mmcore.log.propagate()
    with caplog.at_level(logging.DEBUG, logger="mmcore"):
        Trainer(spec, output=tmp_path / "q2", registry=toy.registry(), plots=False,
                quiet=True).fit()
    found = [r for r in caplog.records if "run saved to" in r.getMessage()]
    assert found and found[0].levelno == logging.DEBUG and found[0].name == "mmcore"


def test_propagate_routes_notes_to_the_programs_logging(spec, tmp_path, capsys, caplog,
                                                        restore_logging):
    mmcore.log.propagate()
    with caplog.at_level(logging.INFO):
        Trainer(spec, output=tmp_path / "r", registry=toy.registry(), plots=False).fit()
    assert any("run saved to" in r.getMessage() and r.levelno == logging.INFO
               for r in caplog.records)
    assert "run saved to" not in capsys.readouterr().err  # not printed twice


def test_the_cli_prints_its_summary_once(tmp_path, capsys):
    data = toy.write_data(tmp_path / "data.csv")
    spec_file = toy.write_spec(tmp_path / "spec.py", toy.spec_dict(data, tmp_path / "cache"))
    reset_registry(toy.registry())  # the CLI's process-wide registry sees the toy plugin
    try:
        code = main(["train", str(spec_file), "--output", str(tmp_path / "c"),
                     "train.epochs=1", "train.callbacks=[]"])
    finally:
        reset_registry(None)
    out, err = capsys.readouterr()
    assert code == 0 and out.count("best epoch: ") == 1 and "best epoch: " not in err


def test_the_epoch_bar_shows_the_loss_for_epochs_shorter_than_the_log_interval(
        spec, tmp_path, capsys):
    # 36 train rows in batches of 8: 5 batches an epoch, fewer than LOG_EVERY (20)
    Trainer(spec, output=tmp_path / "p", registry=toy.registry(), plots=False,
            progress=True).fit()
    assert "loss=" in capsys.readouterr().err
