"""``cnnx export``, ``cnnx inspect`` and ``cnnx bench``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from cnnx.cli import emit_json, floats_option, main, names_option
from cnnx.core.errors import CnnxError, ConfigError

T = TypeVar("T")
# --format's values: cnnx.export.options.CHOICES (tests/export check they agree); spelled out here so
# `cnnx --help` does not import the export side
FORMAT_CHOICES = ["onnx", "torchscript", "onnx-fp16", "ort", "openvino", "executorch", "tflite", "all"]
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def options_of(cls: type[T], params: dict[str, Any]) -> T:
    """The options dataclass ``cls`` from a command's click parameters, one field per option of the same
    name; fields no option sets keep their defaults. An option without a field is a mistake in cnnx."""
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(params) - fields)
    if unknown:
        raise TypeError(f"{cls.__name__} has no field for option(s) {', '.join(unknown)}")
    return cls(**params)


def _shared(what: str) -> Decorator:
    """--arch and --data-dir, which export and bench take alike; ``what`` says what the images are for."""

    def add(command: Callable[..., Any]) -> Callable[..., Any]:
        command = click.option(
            "--data-dir",
            type=click.Path(file_okay=False),
            help=f"Dataset folder for the {what}: an image folder's new place too, if it moved. "
            "[default: the training folder, $CNNX_DATA_DIR, else the sample shipped with cnnx]",
        )(command)
        return click.option("--arch", help="Architecture of a bare state_dict (cnnx checkpoints name their own).")(
            command
        )

    return add


# ---------------------------------------------------------------- export, inspect


@main.command("export")
@click.argument("checkpoint", metavar="CHECKPOINT_OR_RUN", type=click.Path(exists=True))
@click.option(
    "--format",
    "format",
    type=click.Choice(FORMAT_CHOICES),
    default="onnx",
    show_default=True,
    help="onnx-fp16, ort and openvino are made from the fp32 ONNX file, which comes with them; all = every format "
    "whose tools are installed (int8 only with --int8); the others are named as left out, with why (in "
    "the report and --json's skipped).",
)
@click.option(
    "--int8",
    is_flag=True,
    help="Also write the int8 file of each asked format that has one (static QDQ ONNX, full-integer TFLite), "
    "each with its own gate.",
)
@click.option(
    "--out",
    type=click.Path(),
    help="Folder, or a file name (model.onnx) whose stem names the files. [default: beside the checkpoint]",
)
@click.option("--opset", type=int, default=18, show_default=True, help="ONNX opset.")
@click.option(
    "--exporter",
    type=click.Choice(["auto", "dynamo", "legacy"]),
    default="auto",
    show_default=True,
    help="ONNX exporter; auto tries dynamo, then the TorchScript-based (legacy) one.",
)
@click.option(
    "--pad-channels/--no-pad-channels",
    default=True,
    show_default=True,
    help="Pad a convolution's channels to a multiple of 16 with zero filters in the ONNX, fp16 and int8 files "
    "where that is cheap (the same outputs; onnxruntime's blocked x86 kernels run them 0.8x the time). "
    "--no-pad-channels for a device whose onnxruntime lacks those kernels, where the zeros are extra work.",
)
@_shared("parity images")
@click.option(
    "--mean",
    callback=floats_option,
    help="A bare state_dict's per-channel mean, e.g. 0.1307 (a cnnx checkpoint keeps its own). "
    "[default: the arch's dataset's]",
)
@click.option(
    "--std",
    callback=floats_option,
    help="A bare state_dict's per-channel std, e.g. 0.3081 (a cnnx checkpoint keeps its own). "
    "[default: the arch's dataset's]",
)
@click.option("--classes", callback=names_option, help="Comma-separated class names. [default: the spec's]")
@click.option(
    "--threads",
    type=int,
    default=0,
    show_default=True,
    help="torch and onnxruntime threads during parity; 0 = automatic: half the cores, 1 at least, 4 at most.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the parity report as JSON on stdout.")
def export_cmd(checkpoint: str, as_json: bool, **options: Any) -> None:
    """Export CHECKPOINT_OR_RUN (a .pt file, a run folder, or a bare state_dict with --arch) to ONNX and more.

    A run folder means its best.pt (its last.pt when it has no best.pt), and the files are named
    after the checkpoint: RUN/best.onnx, RUN/best.torchscript, RUN/best.fp16.onnx, RUN/best.ort,
    RUN/best.xml. ONNX-family files carry a few test images for `cnnx verify`. Every file is checked against the
    checkpoint on real test images and random inputs before it is kept; a failed check exits
    with code 3 and writes nothing. parity.json beside the files keeps one record per format.

    Example: cnnx export artifacts/runs/mnist --format all
    """
    from cnnx.export import ExportOptions, export_checkpoint
    from cnnx.export.report import render

    say = None if as_json else (lambda message: click.echo(message, err=True))
    try:
        report = export_checkpoint(Path(checkpoint), options_of(ExportOptions, options), progress=say)
    except CnnxError as exc:
        if as_json and exc.report is not None:
            emit_json(exc.report)  # a failed gate is a result too: its numbers on stdout, exit code 3
        raise
    emit_json(report) if as_json else click.echo(render(report))
    named = _format_named(options.get("out"))
    if named is not None and named not in report["formats"]:
        base = named.removesuffix("-int8")
        how = ("--int8" if base == "onnx" else f"--format {base} --int8") if base != named else f"--format {named}"
        click.echo(
            f"note: --out {options['out']} has the suffix of {named} files, which this export did not write "
            f"(--out names the files only); add {how} for one",
            err=True,
        )


def _format_named(out: str | None) -> str | None:
    """The format whose file name ``--out`` gives (as export reads it, ``named_by``), or None."""
    from cnnx.export.formats import named_by

    named = None if out is None or Path(out).is_dir() else named_by(Path(out).name)
    return named[0] if named is not None and named[1] else None


@main.command("inspect")
@click.argument("file", metavar="FILE_OR_RUN", type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print what the file holds as JSON.")
def inspect_cmd(file: str, as_json: bool) -> None:
    """Show what FILE_OR_RUN (.onnx, .ort, OpenVINO .xml, TorchScript, a .pt checkpoint, or a run
    folder) holds: spec, inputs/outputs, opset, size, parity, the self-check `cnnx verify` runs.

    A run folder means its best.pt (its last.pt when it has no best.pt). .onnx, .ort and
    TorchScript files are read without torch; .xml files need openvino (cnnx[openvino]).

    Example: cnnx inspect artifacts/runs/mnist/best.onnx
    """
    from cnnx.tools.inspect import inspect_file, render

    info = inspect_file(Path(file))
    emit_json(info) if as_json else click.echo(render(info))


# ---------------------------------------------------------------- bench


@main.command("bench")
@click.argument("checkpoint", metavar="CHECKPOINT_OR_RUN")
@click.option(
    "--seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=2.0,
    show_default=True,
    help="Timing budget per format and batch size (1, 64, 1024).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Intra-op threads of every format alike. 1 is the fair comparison on a small device: no "
    "thread pool fights another process for a core, and a model this small gains little from "
    "more; 0 = every core.",
)
@click.option(
    "--cold-runs",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Whole-process cold starts per format; the median is reported.",
)
@_shared("test images")
@click.option(
    "--plot", type=click.Path(dir_okay=False), help="Bar chart PNG. [default: bench.png beside the checkpoint]"
)
@click.option("--no-plot", is_flag=True, help="Draw no chart.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole result as JSON on stdout.")
def bench_cmd(checkpoint: str, no_plot: bool, as_json: bool, **options: Any) -> None:
    """Compare the formats CHECKPOINT_OR_RUN can ship as on this CPU: PyTorch eager, TorchScript, ONNX Runtime
    (fp32, int8, fp16 and .ort), and OpenVINO, ExecuTorch and LiteRT where their packages are installed.

    Size, test accuracy, batch-1 latency p50/p99, throughput at batch 64 and 1024,
    load time, peak memory and whole-process cold start, each format in fresh
    processes of its own. A run folder means its best.pt (its last.pt when it has no
    best.pt). The exports beside it that its parity.json records are used as they are;
    missing ones are made first with `cnnx export`'s parity gates. Progress goes to stderr.

    Example: cnnx bench artifacts/runs/mnist --data-dir ~/.cache/cnnx/data
    """
    import sys

    from cnnx.bench.report import render
    from cnnx.bench.run import BenchOptions, benchmark

    opts = options_of(BenchOptions, {**options, "plot": "" if no_plot else options["plot"]})
    result = benchmark(Path(checkpoint), opts, progress=lambda message: click.echo(message, err=True))
    result["command"] = " ".join(["cnnx", *sys.argv[1:]])
    emit_json(result) if as_json else click.echo(render(result))
    if result.get("plot_error"):  # printed after the numbers, which stand without the chart
        raise ConfigError(result["plot_error"])
