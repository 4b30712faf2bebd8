"""The library logs through `logging`: module loggers under "bench" (`logging.getLogger(__name__)`).
It sets up no handler itself; the CLI does (`to_stderr`), and so does each worker process
it starts (`--jobs` workers, scheduler jobs), so their lines reach the terminal too."""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Iterator

LOGGER = "bench"


class _Stderr(logging.StreamHandler):
    """Plain lines to whatever `sys.stderr` is now (a test's capture included)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler assigns it; the property always follows sys.stderr
        pass


@contextlib.contextmanager
def to_stderr(level: int = logging.INFO) -> Iterator[None]:
    """Inside, the "bench" loggers' records at `level` and above go to stderr, one plain line
    each; on leaving, the handler and level are taken away again (a command run in-process
    leaves no handler behind)."""
    logger = logging.getLogger(LOGGER)
    handler, before = _Stderr(), logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)


def in_worker(level: int | None = None) -> None:
    """In a process the CLI started (a --jobs worker, a scheduler job), for the rest of its
    life: log to stderr as the CLI does (at `level`, default INFO), unless `level` is None
    and logging is already set up there."""
    logger = logging.getLogger(LOGGER)
    if level is not None or not (logger.handlers or logging.getLogger().handlers):
        logger.addHandler(_Stderr())
        logger.setLevel(logging.INFO if level is None else level)
