"""mmcore's messages through :mod:`logging` (the ``mmcore`` logger), shown on stderr by default.

Notes for the user (a resume, an unfreeze, bad rows left out, the run summary) are ``INFO``
records of the ``mmcore`` logger; with ``quiet`` they are ``DEBUG`` records, hidden unless the
level asks for them. As in ``transformers``, the logger has its own handler, which prints plain
lines to stderr through ``tqdm.write`` (so that they do not break a progress bar), and does not
propagate to the root logger. To route the records through your own logging configuration::

    import logging
    import mmcore.log

    logging.basicConfig(filename="train.log", level=logging.INFO)
    mmcore.log.propagate()                             # mmcore's records go to train.log
    logging.getLogger("mmcore").setLevel(logging.WARNING)   # or: silence the notes

Importing this module is cheap (no torch).
"""

from __future__ import annotations

import logging
import sys

LOGGER_NAME = "mmcore"


class _DefaultHandler(logging.Handler):
    """Plain lines on stderr (the stream current at each record, so captured output works)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm.std import tqdm  # not tqdm.auto: it warns in a notebook without widgets

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


_configured = False


def get_logger() -> logging.Logger:
    """The ``mmcore`` logger, with its default stderr handler (attached once)."""
    global _configured
    logger = logging.getLogger(LOGGER_NAME)
    if not _configured:
        _configured = True
        handler = _DefaultHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
    return logger


def propagate() -> None:
    """Send mmcore's records to the root logger's handlers instead of the default stderr
    handler (for a program that configures :mod:`logging` itself)."""
    logger = get_logger()
    for handler in [h for h in logger.handlers if isinstance(h, _DefaultHandler)]:
        logger.removeHandler(handler)
    logger.propagate = True


def note(message: str, quiet: bool = False) -> None:
    """A note for the user: ``INFO``, or ``DEBUG`` when ``quiet``."""
    get_logger().log(logging.DEBUG if quiet else logging.INFO, message)


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (where stderr is no terminal, yet progress
    widgets work)."""
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return type(shell).__name__ == "ZMQInteractiveShell"
