"""``cnnx verify``: run the self-check an exported file carries on this device (no torch)."""

from __future__ import annotations

from pathlib import Path

import click

from cnnx.cli import emit_json, main
from cnnx.core.errors import CnnxError


@main.command("verify")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--threads", type=click.IntRange(min=0), default=0, show_default=True, help="Runtime threads; 0 = physical cores."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout (on failure too).")
def verify_cmd(model: str, threads: int, as_json: bool) -> None:
    """Check that this device's runtime computes what the checkpoint did, on the test images MODEL carries.

    Every ONNX-family file from `cnnx export` (.onnx, .fp16.onnx, .int8.onnx, .ort) carries a few real
    test images and the checkpoint's logits for them. Prints pass or FAIL with the largest logit
    difference and the tolerance its format was gated with; exits 0 on pass, 3 on fail, 2 for a
    file that cannot be used or carries no self-check.

    Example: cnnx verify best.onnx
    """
    from cnnx.runtime.verify import render, verify

    try:
        result = verify(Path(model), threads or None)
    except CnnxError as exc:
        if as_json and exc.report is not None:
            emit_json(exc.report)  # a failed check is a result too: its numbers on stdout, exit code 3
        raise
    emit_json(result) if as_json else click.echo(render(result))
