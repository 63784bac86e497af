"""Holding back what third-party converters and runtimes print that is no message for the user:
their C++ logging on file descriptor 2, and their Python warnings and logger lines. Stdlib only."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def native_stderr_held() -> Iterator[None]:
    """File descriptor 2 points at /dev/null for the duration (C++ code writes there, not to sys.stderr)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextmanager
def notices_held(loggers: tuple[str, ...], categories: tuple[type[Warning], ...]) -> Iterator[None]:
    """The named loggers at ERROR and the warning ``categories`` ignored, for the duration."""
    held = [logging.getLogger(name) for name in loggers]
    levels = [log.level for log in held]
    for log in held:
        log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            for category in categories:
                warnings.simplefilter("ignore", category)
            yield
    finally:
        for log, level in zip(held, levels, strict=True):
            log.setLevel(level)
