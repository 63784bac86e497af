"""Output of the long-running edge commands: blocks of stdout lines and a progress bar on stderr."""

from __future__ import annotations

import sys
from typing import Any

import click


class Console:
    """Output for long runs: stdout lines are written a block at a time (one write per
    batch, not per image), and a progress bar shows on stderr; while it shows on a
    terminal, lines that would cut through it are held back until it finishes."""

    def __init__(self, total: int, show: bool | None, label: str) -> None:
        show = sys.stderr.isatty() and total > 1000 if show is None else show
        self.bar = click.progressbar(length=total, label=label, file=sys.stderr) if show else None
        self.hold = self.bar is not None and sys.stdout.isatty()
        self.out: list[str] = []
        self.err: list[str] = []

    def __enter__(self) -> Console:
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def echo(self, line: str, err: bool = False) -> None:
        if err and self.bar is None:
            click.echo(line, err=True)
        else:
            (self.err if err else self.out).append(line)

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)
        if not self.hold and len(self.out) >= 256:
            self.flush()

    def flush(self) -> None:
        if self.out:
            click.echo("\n".join(self.out))
            self.out.clear()

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
        self.flush()
        for line in self.err:
            click.echo(line, err=True)
