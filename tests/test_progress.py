"""Training progress a person can read anywhere: one log line per epoch when no progress bar
is shown (a script, a SLURM job, a notebook without ipywidgets), bars on a terminal, widgets
in a notebook only when ipywidgets is there."""

from __future__ import annotations

import re

import pytest
import torch

import mmcore
from mmcore.train import Trainer, progress
from tests import train_toy as toy

LINE = re.compile(r"epoch (\d)/2: train loss \d\.\d{4}, validation loss \d\.\d{4}, "
                  r"label\.accuracy \d\.\d{4}( \(best\))?, \d+\.\d s")


@pytest.fixture
def spec(tmp_path):
    data = toy.write_data(tmp_path / "data.csv")
    return toy.spec_dict(data, tmp_path / "cache", epochs=2, callbacks=[])


def _fit(spec, run, **kwargs):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        Trainer(spec, output=run, registry=toy.registry(), plots=False, report=False,
                summary=False, **kwargs).fit()
    finally:
        torch.set_num_threads(before)


def _epoch_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if re.match(r"epoch \d/\d: ", line)]


def test_without_a_terminal_each_epoch_is_one_line(spec, tmp_path, capsys):
    _fit(spec, tmp_path / "r")  # pytest's stderr is not a terminal: no bars
    lines = _epoch_lines(capsys.readouterr().err)
    assert len(lines) == 2, lines
    assert [LINE.fullmatch(x).group(1) for x in lines] == ["1", "2"]
    assert "(best)" in lines[0]


def test_quiet_or_bars_mean_no_epoch_lines_unless_named(spec, tmp_path, capsys):
    _fit(spec, tmp_path / "q", quiet=True)
    assert capsys.readouterr().err == ""
    _fit(spec, tmp_path / "b", progress=True)
    err = capsys.readouterr().err
    assert "epochs: 100%" in err and not _epoch_lines(err)
    named = dict(spec, train=dict(spec["train"], callbacks=["log"]))
    _fit(named, tmp_path / "n", progress=True)
    assert len(_epoch_lines(capsys.readouterr().err)) == 2  # "log" named: lines with bars


def test_a_notebook_gets_widgets_only_with_ipywidgets(monkeypatch):
    from tqdm.std import tqdm as text_bar

    monkeypatch.setattr(progress, "in_notebook", lambda: True)
    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: False, raising=False)
    monkeypatch.setattr(progress, "widgets_available", lambda: False)
    assert not progress.bars_render() and progress.bar_class() is text_bar
    monkeypatch.setattr(progress, "widgets_available", lambda: True)
    from tqdm.notebook import tqdm as widget_bar

    assert progress.bars_render() and progress.bar_class() is widget_bar


def test_the_epoch_line_shows_each_heads_loss_when_there_are_several():
    class Monitor:
        name, key = "loss", "validation/loss"

    record = {"epoch": 4, "train/loss": 1.5, "train/a.loss": 1.0, "train/b.loss": 0.5,
              "validation/loss": 1.25, "seconds": 3.04}
    assert progress.epoch_line(record, 10, Monitor(), 2) == (
        "epoch 4/10: train loss 1.5000 (a.loss 1.0000, b.loss 0.5000), validation loss "
        "1.2500, 3.0 s")


class FailsMidEpoch:
    """A user's callback that fails in the middle of epoch 2, and sees the events around."""

    def __init__(self):
        self.seen = []

    @mmcore.hookimpl
    def on_train_epoch_start(self, trainer, epoch):
        self.seen.append(("epoch start", epoch, trainer.progress.start, trainer.progress.total))

    @mmcore.hookimpl
    def on_train_batch_end(self, trainer, batch):
        if (trainer.progress.epoch, batch) == (2, 2):
            raise RuntimeError("boom")

    @mmcore.hookimpl
    def on_exception(self, trainer, error):
        self.seen.append(("exception", str(error)))


def test_an_error_mid_epoch_closes_the_bars_before_it_is_printed(spec, tmp_path, capsys):
    callback = FailsMidEpoch()
    with pytest.raises(RuntimeError, match="boom"):
        _fit(spec, tmp_path / "f", progress=True, callbacks=[callback])
    assert callback.seen == [("epoch start", 1, 0, 5), ("epoch start", 2, 0, 5),
                             ("exception", "boom")]
    err = capsys.readouterr().err
    # the batch bar (leave=False) was cleared: after its last draw, tqdm moves down to its
    # line, blanks it and comes back up; then the epochs bar is drawn a last time and ends
    # its line, so the traceback starts on a line of its own
    batches = err.rindex("epoch 2:")
    assert re.match(r"epoch 2: [^\r\n]*\n\r {10,}\x1b\[A\r", err[batches:]), err[batches:]
    last = err.rsplit("\r", 1)[-1]
    assert re.fullmatch(r"epochs:  50%\|[^\n]*1/2 \[[^\n]*loss=[^\n]*\] *\n", last), repr(last)
