"""The ``mmcore`` command line. Each command lives in its own module with ``add_parser`` and
``run``; modules import torch only inside ``run``, and a command line that names its command
imports that command's module alone (another's parser may import heavy modules, as ``serve``'s
reads its limits from :mod:`mmcore.inference.serve`), so ``mmcore plugins`` stays quick."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from mmcore import __version__
from mmcore.cli import lifeline
from mmcore.errors import MmcoreError

#: command name -> module under mmcore.cli
COMMANDS = {
    "plugins": "plugins",
    "validate": "validate",
    "train": "train",
    "evaluate": "evaluate",
    "plots": "plots",
    "predict": "predict",
    "new-plugin": "new_plugin",
    "tune": "tune",
    "export": "export",
    "serve": "serve",
}

EXIT_USER_ERROR = 2
#: ``--trust-code`` of the commands that read a spec.json (train, validate, tune)
SPEC_TRUST_HELP = ("let a spec.json name fusion and callback classes in any module, and a "
                   "fusion in a Python file (it imports them); without it only mmcore's and "
                   "installed plugins' modules")
#: what a shell reports for a process ended by SIGPIPE (128 + 13): the reader went away
EXIT_BROKEN_PIPE = 141


class _CommandParser(argparse.ArgumentParser):
    """Accepts ``field=value`` overrides after options too (``SPEC --quiet train.epochs=3``)
    for commands that take them: argparse stops filling a ``nargs="*"`` positional once an
    option intervenes."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if not hasattr(namespace, "overrides"):
            return namespace, extras
        late = [e for e in extras if "=" in e and not e.startswith("-")]
        namespace.overrides = [*(namespace.overrides or []), *late]
        return namespace, [e for e in extras if e not in late]


def command_of(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names (its first word that is not an option, when that is a
    command), else ``None``. The top-level options take no values, so no option's value can be
    mistaken for the command."""
    for word in argv:
        if word == "--":
            return None
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(commands: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``mmcore`` parser with the sub-parsers of ``commands`` (default: all of them; a
    command left out is refused as unknown, so pass all for ``--help`` and for errors)."""
    parser = argparse.ArgumentParser(
        prog="mmcore", description="Multimodal deep learning on PyTorch."
    )
    parser.add_argument("--version", action="version", version=f"mmcore {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks; re-raise plugin errors"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_CommandParser)
    for name, module_name in COMMANDS.items():
        if commands is not None and name not in commands:
            continue
        try:
            module = importlib.import_module(f"mmcore.cli.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"mmcore.cli.{module_name}":
                continue  # command not built yet in this checkout
            raise
        cmd = module.add_parser(sub, name)
        cmd.add_argument(
            "--debug",
            action="store_true",
            default=argparse.SUPPRESS,
            help="show tracebacks; re-raise plugin errors",
        )
        cmd.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    lifeline.arm()  # a rank of `--nproc N` dies with its launcher
    words = sys.argv[1:] if argv is None else list(argv)
    command = command_of(words)
    parser = build_parser(None if command is None else [command])
    args = parser.parse_args(words)
    args.argv = words  # what the ranks of --nproc N run again (mmcore.cli.workers)
    if args.command is None:
        parser.print_help()
        return EXIT_USER_ERROR
    debug = getattr(args, "debug", False)
    if debug:
        os.environ["MMCORE_STRICT_PLUGINS"] = "1"
    try:
        code = int(args.run(args) or 0)
        sys.stdout.flush()  # inside the try: a reader that left early is a broken pipe here
        return code
    except BrokenPipeError:
        # `mmcore plugins --json | head`: the reader has what it wanted. Point stdout at
        # devnull so the interpreter's own flush at exit does not fail again (Python docs,
        # "Note on SIGPIPE").
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except MmcoreError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
