"""``cnnx verify``: run the self-check an exported file carries on this device (no torch, but for .pte)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from cnnx.cli import emit_json, main
from cnnx.core.errors import CnnxError

if TYPE_CHECKING:
    from cnnx.runtime.backends import Loader

# where ExecuTorch's Python runtime (which brings torch) does not load, the way out for a .pte
PTE_WAY_OUT = (
    'pip install "cnnx[executorch]", which brings torch; or, with no Python at all, run {bundle} (the program '
    "with these test images and logits) in ExecuTorch's executor_runner built with bundled-program support"
)


@main.command("verify")
@click.argument("model", type=click.Path(exists=True), metavar="MODEL_OR_RUN")
@click.option(
    "--threads", type=click.IntRange(min=0), default=0, show_default=True, help="Runtime threads; 0 = physical cores."
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the result as JSON on stdout (on failure too: a file that cannot be checked gives "
    '{"passed": false, "error": ...}).',
)
def verify_cmd(model: str, threads: int, as_json: bool) -> None:
    """Check that this device's runtime computes what the checkpoint did, on the test images MODEL_OR_RUN carries.

    A training run folder means the ONNX file `cnnx export RUN` wrote into it (RUN/best.onnx; RUN/last.onnx
    when it has no best.pt); a run folder not exported yet is an error saying so.

    Every file from `cnnx export` (.onnx, .fp16.onnx, .int8.onnx, .ort, .xml, .tflite, .pte) carries a
    few real test images and the checkpoint's logits for them. Prints pass or FAIL with the largest
    logit difference and the tolerance its format was gated with; exits 0 on pass, 3 on fail, 2 for
    a file that cannot be used or carries no self-check.

    An ExecuTorch program (.pte, its check in the .pte.json beside it) runs in ExecuTorch's own Python
    runtime, which imports torch: it needs pip install "cnnx[executorch]". With no Python, the .bpte
    beside it checks the program in ExecuTorch's executor_runner.

    Example: cnnx verify best.onnx
    """
    from cnnx.runtime.sources import model_file
    from cnnx.runtime.verify import render, verify

    try:
        path = model_file(model)  # a run folder: its exported ONNX file
        result = verify(path, threads or None, _opener(path))
    except CnnxError as exc:
        if as_json:  # a failed check is a result too (its numbers, exit 3); a file that cannot be checked says why (2)
            emit_json(exc.report if exc.report is not None else {"model": model, "passed": False, "error": str(exc)})
        elif exc.report is not None:
            click.echo(render(exc.report))  # "FAIL: ..." on stdout, as "pass: ..."; the error and the way out on stderr
        raise
    emit_json(result) if as_json else click.echo(render(result))


def _opener(path: Path) -> Loader | None:
    """What opens ``path`` for the check: for an ExecuTorch program, its own Python runtime on the torch side
    (imported here, on this path only); None (the edge runtime's loader) for every other file."""
    if path.suffix.lower() != ".pte":
        return None
    from cnnx.core.contract import first_line
    from cnnx.core.errors import ModelFileError

    try:
        from cnnx.export.formats.executorch_pte import DeviceProgram, unavailable

        why = unavailable()
    except ImportError as exc:  # the base install: no torch, so no export side
        why = first_line(exc, 200)
    if why is not None:
        raise ModelFileError(
            f"{path} is an ExecuTorch program, which cnnx verify runs with ExecuTorch's Python runtime "
            f"(it imports torch); that does not load here ({why})",
            PTE_WAY_OUT.format(bundle=path.with_suffix(".bpte").name),
        )
    return DeviceProgram
