"""The ``cnnx`` command. Each command parses options, calls one core function, prints the result.

Commands live in their own modules and are imported only when they run: ``cnnx
infer`` loads the edge commands and nothing else, so it starts fast on a device
that has no torch at all, and never builds the training commands' option tables.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import sys
from typing import Any

import click

import cnnx
from cnnx.core.errors import CnnxError

# command name -> (module, function, the extra that installs what it needs beyond the base install);
# the order is the order `cnnx --help` lists them in
COMMANDS: dict[str, tuple[str, str, str]] = {
    "train": ("cnnx.cli.train", "train", "train"),
    "summary": ("cnnx.cli.tools", "summary", "train"),
    "samples": ("cnnx.cli.tools", "samples", "train"),
    "export": ("cnnx.cli.export", "export_cmd", "train"),
    "inspect": ("cnnx.cli.export", "inspect_cmd", "train"),
    "bench": ("cnnx.cli.export", "bench_cmd", "train"),
    "infer": ("cnnx.cli.edge", "infer", "train"),
    "eval": ("cnnx.cli.edge", "eval_cmd", "train"),
    "verify": ("cnnx.cli.verify", "verify_cmd", "train"),
    "serve": ("cnnx.cli.serve", "serve", "serve"),
}


# At exit, everything still alive is moved out of the cyclic collector's reach, so the interpreter's
# last collections skip the few hundred thousand objects torch and its compiler stack create: they
# cost 0.8 s of every torch command's exit on a 2-core CPU. The process's memory is released either way.
atexit.register(gc.freeze)


class _Group(click.Group):
    """Loads a command's module on first use, and turns CnnxError into ``error: ...`` on one
    line and a non-zero exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CnnxError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except ImportError as exc:
            missing = getattr(exc, "name", None) or str(exc)
            extra = COMMANDS.get(ctx.invoked_subcommand or "", ("", "", "train"))[2]
            side = {"train": "the training side", "serve": "the server"}[extra]
            click.echo(
                f"error: this command needs {missing}, which is not installed "
                f'(install {side}: pip install "cnnx[{extra}]")',
                err=True,
            )
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(cnnx.__version__, prog_name="cnnx")
def main() -> None:
    """Train a CNN, export it with proof of parity, classify images on a CPU-only device."""


# click callbacks shared by the commands that take per-channel numbers, class names or a size:
# parsed by cnnx.core.spec, so a bad value is the same one-line error everywhere


def floats_option(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, ...] | None:
    """ "0.485,0.456,0.406" -> (0.485, 0.456, 0.406)."""
    from cnnx.core.spec import parse_floats

    return None if value is None else parse_floats(value, param.opts[0])


def names_option(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    """ "cat, dog" -> ["cat", "dog"]."""
    return None if value is None else [v.strip() for v in value.split(",")]


def size_option(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    """ "28" -> (28, 28); "32x24" -> (32, 24)."""
    from cnnx.core.spec import parse_size

    return None if value is None else parse_size(value)


def emit_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout (paths and other objects as strings)."""
    import json

    click.echo(json.dumps(data, indent=2, default=str))
