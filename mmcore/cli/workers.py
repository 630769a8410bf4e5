"""The command line each rank of ``--nproc N`` runs (this process's own, less ``--nproc``),
and each worker of ``mmcore tune --jobs J`` (its own, with ``--jobs 1`` added).

Rebuilding the arguments from the parsed namespace meant a hand-kept list of flags per
command, and a flag added to a parser but not to its list was silently dropped on the ranks.
The words the user typed are kept by :func:`mmcore.cli.main` instead (``args.argv``), so every
flag reaches the ranks exactly as given.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

NPROC = "--nproc"


def without_nproc(words: Sequence[str]) -> list[str]:
    """``words`` with every ``--nproc N`` / ``--nproc=N`` removed. A prefix argparse accepted
    for it (``--npr 2``) counts too: on a command line that parsed, such a prefix can only
    have been ``--nproc``. Words after ``--`` are values and kept as they are."""
    out: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--":
            return out + list(words[i:])
        name, eq, _ = word.partition("=")
        if len(name) > 3 and NPROC.startswith(name):
            i += 1 if eq else 2  # the option, and its value when given apart
            continue
        out.append(word)
        i += 1
    return out


def typed_words(args: argparse.Namespace) -> list[str]:
    """The command line this process was given (``args.argv``, set by
    :func:`mmcore.cli.main`)."""
    words = getattr(args, "argv", None)
    if words is None:
        raise RuntimeError("args.argv is unset: parse the command line with mmcore.cli.main")
    return list(words)


def worker_argv(args: argparse.Namespace) -> list[str]:
    """The arguments of ``python -m mmcore`` for each rank: the command line this process
    was given without ``--nproc``."""
    return without_nproc(typed_words(args))


def with_options(words: Sequence[str], options: Sequence[str]) -> list[str]:
    """``words`` with ``options`` after the last option the user gave (before a ``--``, after
    which every word is a value), so that they override an earlier occurrence: argparse keeps
    the last value of an option given twice."""
    words = list(words)
    end = words.index("--") if "--" in words else len(words)
    return [*words[:end], *options, *words[end:]]
