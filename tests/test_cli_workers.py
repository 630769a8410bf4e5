"""The ranks of ``--nproc N`` run the command line they were given, less ``--nproc``: every
option of ``train``, ``evaluate`` and ``predict`` reaches them, whatever options are added; so
does every option of ``tune`` reach the workers of ``--jobs J``, which start none of their
own."""

from __future__ import annotations

import argparse

import pytest

from mmcore.cli import build_parser, main
from mmcore.cli.tune import _worker_argv as tune_worker_argv
from mmcore.cli.workers import with_options, without_nproc, worker_argv

#: a value for each option that takes one, by its destination (a plausible word otherwise)
VALUES = {"device": "cpu", "batch_size": "7", "split": "validation"}


def every_option(parser: argparse.ArgumentParser, command: str) -> list[str]:
    """A command line giving ``command`` its positionals and every one of its options (the
    first of options that exclude each other)."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    cmd = sub.choices[command]
    words = [command]
    exclusive = {id(a) for g in cmd._mutually_exclusive_groups for a in g._group_actions[1:]}
    for action in cmd._actions:
        if isinstance(action, argparse._HelpAction) or id(action) in exclusive:
            continue
        if not action.option_strings:
            words += ["spec.py"] if action.nargs != "*" else ["train.seed=1"]
            continue
        option = action.option_strings[-1]
        if action.dest in ("nproc", "jobs"):
            words += [option, "2"]
        elif action.nargs == 0:
            words.append(option)
        elif action.choices:
            words += [option, str(next(iter(action.choices)))]
        elif action.type is int:
            words += [option, VALUES.get(action.dest, "3")]
        else:
            words += [option, VALUES.get(action.dest, f"x-{action.dest}")]
    return words


@pytest.mark.parametrize("command", ["train", "evaluate", "predict"])
def test_every_option_reaches_the_ranks(command):
    parser = build_parser([command])
    words = every_option(parser, command)
    args = parser.parse_args(words)
    args.argv = words
    again = parser.parse_args(worker_argv(args))
    expected = {k: v for k, v in vars(args).items() if k not in ("nproc", "argv")}
    got = {k: v for k, v in vars(again).items() if k != "nproc"}
    assert got == expected and again.nproc is None


def test_nproc_is_removed_in_every_spelling_and_values_after_a_double_dash_are_kept():
    assert without_nproc(["train", "s.py", "--nproc", "2", "--quiet"]) == ["train", "s.py",
                                                                           "--quiet"]
    assert without_nproc(["train", "--nproc=4", "s.py"]) == ["train", "s.py"]
    assert without_nproc(["train", "--npr", "4", "s.py"]) == ["train", "s.py"]  # a prefix
    assert without_nproc(["--debug", "train", "s.py", "--", "--nproc"]) == [
        "--debug", "train", "s.py", "--", "--nproc"]


def test_main_keeps_the_words_it_was_given(monkeypatch):
    seen = {}

    def fake_launch(nproc, argv):
        seen["argv"] = argv
        return 0

    monkeypatch.setattr("mmcore.distributed.launch.launch", fake_launch)
    assert main(["--debug", "train", "spec.py", "--nproc", "2", "--no-report",
                 "train.epochs=1"]) == 0
    assert seen["argv"] == ["--debug", "train", "spec.py", "--no-report", "train.epochs=1"]


@pytest.mark.parametrize("given_output", [True, False])
def test_every_tune_option_reaches_its_workers_and_they_start_no_more(given_output):
    parser = build_parser(["tune"])
    words = every_option(parser, "tune")
    if not given_output:  # the folder the first process chose, named to every worker
        i = words.index("-o")  # every_option spells each option its last way
        del words[i:i + 2]
    args = parser.parse_args(words)
    args.argv = words
    again = parser.parse_args(tune_worker_argv(args, "runs/chosen-tune"))
    assert again.jobs == 1 and args.jobs == 2
    assert again.output == (args.output if given_output else "runs/chosen-tune")
    expected = {k: v for k, v in vars(args).items() if k not in ("jobs", "output", "argv")}
    assert {k: v for k, v in vars(again).items() if k not in ("jobs", "output")} == expected


def test_options_added_for_workers_go_before_a_double_dash():
    assert with_options(["tune", "s.py", "--", "--x=1"], ["--jobs", "1"]) == [
        "tune", "s.py", "--jobs", "1", "--", "--x=1"]
    assert with_options(["tune", "s.py"], ["--jobs", "1"]) == ["tune", "s.py", "--jobs", "1"]
