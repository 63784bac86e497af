"""The ``cnnx`` command. Each command parses options, calls one core function, prints the result.

The torch side is imported inside the commands that need it, so ``cnnx infer``
starts fast on a device that has no torch at all.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

import cnnx
from cnnx.errors import CnnxError
from cnnx.train.config import PRESETS as _PRESETS  # stdlib only: no torch at start-up
from cnnx.train.config import TrainConfig as _Defaults


class _Group(click.Group):
    """Turns CnnxError into ``error: ...`` on one line and a non-zero exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CnnxError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except ImportError as exc:
            missing = getattr(exc, "name", None) or str(exc)
            click.echo(
                f"error: this command needs {missing}, which is not installed "
                '(install the training side: pip install "cnnx[train]")',
                err=True,
            )
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(cnnx.__version__, prog_name="cnnx")
def main() -> None:
    """Train a CNN, export it with proof of parity, classify images on a CPU-only device."""


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


# ---------------------------------------------------------------- train

_TRAIN_HELP_DEFAULTS = "Defaults were chosen by measurement on a 2-core CPU (README, bench/train_speed.py)."


@main.command(epilog=_TRAIN_HELP_DEFAULTS)
@click.argument("dataset", required=False)
@click.option("--preset", type=click.Choice(list(_PRESETS)), default="default", show_default=True,
              help="Named option set, explicit options override it: " + "; ".join(
                  f"{k} = {', '.join(f'{o} {v}' for o, v in p.items()) or 'the defaults'}" for k, p in _PRESETS.items()))
@click.option("--arch", help="Architecture name (see `cnnx train --list-archs`). [default: the dataset's]")
@click.option("--epochs", type=int, help=f"Passes over the training data. [default: {_Defaults.epochs}]")
@click.option("--batch-size", type=int, help=f"Images per optimiser step. [default: {_Defaults.batch_size}]")
@click.option("--lr", type=float, help=f"Peak (one-cycle) or initial learning rate. [default: {_Defaults.lr}]")
@click.option("--optimizer", type=click.Choice(["sgd", "adam", "adamw"]), help=f"[default: {_Defaults.optimizer}]")
@click.option("--momentum", type=float, help=f"SGD momentum / Adam beta1. [default: {_Defaults.momentum}]")
@click.option("--weight-decay", type=float, help=f"[default: {_Defaults.weight_decay}]")
@click.option("--schedule", type=click.Choice(["onecycle", "cosine", "constant"]), help=f"LR schedule. [default: {_Defaults.schedule}]")
@click.option("--warmup", type=float, help=f"Fraction of steps spent warming up (one-cycle). [default: {_Defaults.warmup}]")
@click.option("--label-smoothing", type=float, help=f"[default: {_Defaults.label_smoothing}]")
@click.option("--shift", type=int, help=f"Random-shift augmentation in pixels, 0 = off. [default: {_Defaults.shift}]")
@click.option("--seed", type=int, help=f"Seeds init, data order, augmentation, dropout. [default: {_Defaults.seed}]")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="[default: auto = CUDA when present]")
@click.option("--threads", type=int, help="torch CPU threads, 0 = torch's default. [default: 0]")
@click.option("--workers", type=int,
              help="Threads decoding an image folder (once, before training); MNIST and CIFAR-10 "
                   "are read as whole arrays and need none. [default: 0 = one]")
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="Dataset folder (MNIST: the four IDX files, gzipped or not; CIFAR-10: the "
                   "cifar-10-batches-py folder or its parent). [default: $CNNX_DATA_DIR or ~/.cache/cnnx/data]")
@click.option("--image-size", type=int, help="Image folders: resize images to this many pixels square. [default: 32]")
@click.option("--grayscale/--rgb", default=None, help="Image folders: train on grey (L) or colour images. [default: rgb]")
@click.option("--val-split", type=float,
              help="Image folders without train/ and test/ sub-folders: fraction of each class held out "
                   "for testing, chosen with --seed. [default: 0.2]")
@click.option("--flip/--no-flip", default=None,
              help="Random horizontal flips. [default: on for CIFAR-10 and folders, off for digits]")
@click.option("--save-every", type=int, help="Also keep epoch-NNN.pt every N epochs. [default: 0 = off]")
@click.option("--save-min-acc", type=float,
              help="Write best.pt and epoch-NNN.pt only from this test accuracy up, a fraction "
                   "(0.97 = 97%); last.pt is always written. [default: 0]")
@click.option("--tensorboard/--no-tensorboard", default=None,
              help="Write loss, accuracy, learning rate and sample images to RUN/tensorboard. [default: off]")
@click.option("--plots/--no-plots", default=None, help="Draw curves.png and confusion.png into the run folder. [default: on]")
@click.option("--download/--no-download", default=None, help="Download the dataset when missing. [default: on]")
@click.option("--out", type=click.Path(file_okay=False), help="Run folder. [default: artifacts/runs/<dataset>-<arch>-<time>]")
@click.option("--resume", type=click.Path(exists=True), help="Continue a run from its folder or a checkpoint.")
@click.option("--list-archs", is_flag=True, help="List the registered architectures and exit.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def train(dataset: str | None, preset: str, resume: str | None, list_archs: bool, as_json: bool,
          **options: Any) -> None:
    """Train DATASET (mnist, cifar10, or a folder of class sub-folders) and write last.pt, best.pt,
    metrics.json, curves.png and confusion.png into a run folder.

    Example: cnnx train mnist --epochs 1 --out artifacts/runs/quick
    """
    from cnnx.train import loop
    from cnnx.train.config import PRESETS, TrainConfig
    from cnnx.train.progress import TqdmReporter, archs_table

    if list_archs:
        click.echo(archs_table())
        return
    if resume is None and dataset is None:
        raise click.UsageError("give a DATASET (mnist, cifar10 or a folder) or --resume RUN")
    if resume is not None and any(v is not None for v in options.values()):
        raise click.UsageError("--resume continues a run with its saved options; give no other training options")
    settings = {**PRESETS[preset], **{k: v for k, v in options.items() if v is not None}}
    cfg = TrainConfig(dataset=dataset or "mnist", **settings)
    reporter = TqdmReporter(quiet=as_json)
    try:
        result = loop.train(cfg, reporter, resume=Path(resume) if resume else None)
    except KeyboardInterrupt:
        run_dir = reporter.run_dir or "RUN_DIR"
        click.echo(f"\ninterrupted; the last finished epoch is saved: cnnx train --resume {run_dir}", err=True)
        sys.exit(130)
    if as_json:
        _emit_json(result.summary)
    else:
        s = result.summary
        click.echo(f"done: {s['arch']} on {s['dataset']}, {s['epochs']} epochs, test accuracy "
                   f"{100 * s['final_accuracy']:.2f}% (best {100 * s['best_accuracy']:.2f}%) "
                   f"in {s['wall_seconds']:.1f} s on {s['device']}; checkpoints in {s['run_dir']}")


# ---------------------------------------------------------------- summary, samples (seed-notes tooling)


@main.command()
@click.argument("target", metavar="ARCH_OR_CHECKPOINT")
@click.option("--input-size", help="H, HxW or CxHxW. [default: the architecture's or the checkpoint's]")
@click.option("--batch", type=int, default=1, show_default=True, help="Batch size shown in the output shapes.")
@click.option("--arch", help="Architecture of a bare state_dict (a .pth saved by a seed script).")
@click.option("--classes", "num_classes", type=int, help="Output classes of an architecture. [default: 10]")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def summary(target: str, input_size: str | None, batch: int, arch: str | None, num_classes: int | None,
            as_json: bool) -> None:
    """Layer-by-layer output shapes, parameters and multiply-accumulates of ARCH_OR_CHECKPOINT.

    Example: cnnx summary seed002-lenet --batch 64
    """
    from cnnx.train.summary import format_summary, summarize_target

    result = summarize_target(target, input_size, batch, arch, num_classes)
    if as_json:
        _emit_json(result)
    else:
        click.echo(format_summary(result))


@main.command()
@click.argument("dataset")
@click.option("--out", type=click.Path(dir_okay=False), default="samples.png", show_default=True,
              help="PNG file to write.")
@click.option("--count", type=int, default=64, show_default=True, help="Images in the grid.")
@click.option("--columns", type=int, default=8, show_default=True, help="Images per row.")
@click.option("--split", type=click.Choice(["train", "test"]), default="train", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random pick.")
@click.option("--first", is_flag=True, help="Take the first images instead of a random pick.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="As for `cnnx train`.")
@click.option("--download/--no-download", default=True, help="Download the dataset when missing. [default: on]")
@click.option("--image-size", type=int, help="Image folders: resize to this many pixels square. [default: 32]")
@click.option("--grayscale", is_flag=True, help="Image folders: show grey (L) images, as --grayscale trains.")
@click.option("--val-split", type=float, default=0.2, show_default=True, help="Image folders: as for `cnnx train`.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def samples(dataset: str, out: str, count: int, columns: int, split: str, seed: int, first: bool,
            data_dir: str | None, download: bool, image_size: int | None, grayscale: bool, val_split: float,
            as_json: bool) -> None:
    """Save a labelled grid of DATASET's images (mnist, cifar10 or a folder), exactly as training sees them.

    Example: cnnx samples cifar10 --out cifar10.png
    """
    from cnnx.train.samples import save_samples

    result = save_samples(dataset, Path(out), count, split, None if first else seed, columns,
                          Path(data_dir) if data_dir else None, download, image_size, grayscale, val_split)
    if as_json:
        _emit_json(result)
    else:
        click.echo(f"wrote {result['path']} ({result['width']}x{result['height']}): {result['images']} "
                   f"{result['split']} images of {result['dataset']}")


# ---------------------------------------------------------------- export, inspect


def _numbers(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, ...] | None:
    """"0.485,0.456,0.406" -> (0.485, 0.456, 0.406)."""
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers") from None


def _names(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",")]


@main.command("export")
@click.argument("checkpoint", type=click.Path(exists=True))
@click.option("--format", "format", type=click.Choice(["onnx", "torchscript", "all"]), default="onnx",
              show_default=True, help="all = onnx and torchscript.")
@click.option("--int8", is_flag=True, help="Also write a static int8 (QDQ) ONNX file, with its own gate.")
@click.option("--out", type=click.Path(), help="Folder, or a file name (model.onnx) whose stem names the files. "
                                               "[default: beside the checkpoint]")
@click.option("--opset", type=int, default=18, show_default=True, help="ONNX opset.")
@click.option("--exporter", type=click.Choice(["auto", "dynamo", "legacy"]), default="auto", show_default=True,
              help="ONNX exporter; auto tries dynamo, then the TorchScript-based (legacy) one.")
@click.option("--arch", help="Architecture of a bare state_dict (cnnx checkpoints name their own).")
@click.option("--mean", callback=_numbers, help="Per-channel mean, e.g. 0.1307. [default: the spec's]")
@click.option("--std", callback=_numbers, help="Per-channel std, e.g. 0.3081. [default: the spec's]")
@click.option("--classes", callback=_names, help="Comma-separated class names. [default: the spec's]")
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="Dataset folder for the parity images. [default: the training folder, $CNNX_DATA_DIR, "
                   "else the sample shipped with cnnx]")
@click.option("--threads", type=int, default=0, show_default=True,
              help="torch and onnxruntime threads during parity; 0 = half the cores, 1 to 4.")
@click.option("--json", "as_json", is_flag=True, help="Print the parity report as JSON on stdout.")
def export_cmd(checkpoint: str, as_json: bool, **options: Any) -> None:
    """Export CHECKPOINT (a .pt, a run folder, or a bare state_dict with --arch) to ONNX/TorchScript.

    Every file is checked against the checkpoint on real test images and random
    inputs before it is kept; a failed check exits with code 3 and writes nothing.

    Example: cnnx export artifacts/runs/mnist/best.pt --format all
    """
    from cnnx.export import ExportOptions, export_checkpoint
    from cnnx.export.report import render

    say = None if as_json else (lambda message: click.echo(message, err=True))
    try:
        report = export_checkpoint(Path(checkpoint), ExportOptions(**options), progress=say)
    except CnnxError as exc:
        if as_json and getattr(exc, "report", None):
            _emit_json(exc.report)  # a failed gate is a result too: its numbers on stdout, exit code 3
        raise
    _emit_json(report) if as_json else click.echo(render(report))


@main.command("inspect")
@click.argument("file", type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print what the file holds as JSON.")
def inspect_cmd(file: str, as_json: bool) -> None:
    """Show what FILE (.onnx, TorchScript or .pt checkpoint) holds: spec, inputs/outputs, opset, size, parity.

    .onnx and TorchScript files are read without torch.

    Example: cnnx inspect artifacts/runs/mnist/best.onnx
    """
    from cnnx.inspect import inspect_file, render

    info = inspect_file(Path(file))
    _emit_json(info) if as_json else click.echo(render(info))


# ---------------------------------------------------------------- infer, eval (edge runtime: no torch)


class _Console:
    """Output for long runs: stdout lines are written a block at a time (one write per
    batch, not per image), and a progress bar shows on stderr; while it shows on a
    terminal, lines that would cut through it are held back until it finishes."""

    def __init__(self, total: int, show: bool | None, label: str) -> None:
        show = sys.stderr.isatty() and total > 1000 if show is None else show
        self.bar = click.progressbar(length=total, label=label, file=sys.stderr) if show else None
        self.hold = self.bar is not None and sys.stdout.isatty()
        self.out: list[str] = []
        self.err: list[str] = []

    def __enter__(self) -> _Console:
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


def _edge_env() -> None:
    """Before numpy loads: its OpenBLAS would start a thread per core, for nothing bigger than
    the runtime's 6x6 least-squares fit; one thread starts faster on a small device."""
    import os

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


_THREADS_HELP = "onnxruntime intra-op threads; 0 = the machine's physical cores. Idle threads never spin."
_PREPROCESS_HELP = "auto = the recipe the model's spec names (e.g. mnist-digit); plain = resize only."


@main.command()
@click.argument("images", nargs=-1, required=True)
@click.option("--model", "-m", type=click.Path(dir_okay=False), help="An .onnx file from `cnnx export`. "
              "[default: the MNIST model shipped with cnnx]")
@click.option("--top-k", "-k", type=click.IntRange(min=1), default=1, show_default=True,
              help="Best classes to list per image, with softmax probabilities.")
@click.option("--table", "fmt", flag_value="table", default=True, help="Aligned table on stdout. [default]")
@click.option("--json", "fmt", flag_value="json", help="One JSON object per image, one per line.")
@click.option("--csv", "fmt", flag_value="csv", help="CSV with a header row.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="Images per model call.")
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True, help=_THREADS_HELP)
@click.option("--preprocess", type=click.Choice(["auto", "plain"]), default="auto", show_default=True,
              help=_PREPROCESS_HELP)
@click.option("--save-preprocessed", type=click.Path(file_okay=False),
              help="Write exactly what the model saw, one PNG per image, into this folder.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr. [default: on for over 1,000 images when stderr is a terminal]")
def infer(images: tuple[str, ...], model: str | None, top_k: int, fmt: str, batch_size: int, threads: int,
          preprocess: str, save_preprocessed: str | None, progress: bool | None) -> None:
    """Classify IMAGE... (files, folders searched recursively, glob patterns) without torch.

    Exit code 0 when every image was classified, 1 when any could not be (each
    named on stderr; the others are still classified), 2 for a bad model or option.

    Example: cnnx infer digit.png photos/ --top-k 3
    """
    _edge_env()
    from cnnx.runtime.output import Formatter
    from cnnx.runtime.predict import Classifier
    from cnnx.runtime.sources import expand

    paths, problems = expand(images)
    clf = Classifier(model, threads=threads, preprocess=None if preprocess == "auto" else "plain",
                     batch_size=batch_size)
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if not paths:
        sys.exit(2)
    out, failed = Formatter(fmt, top_k, paths), len(problems)
    with _Console(len(paths), progress, "classifying") as console:
        if out.header():
            console.echo(out.header())
        for pred in clf.iter_predict(paths, top_k=top_k, save_dir=save_preprocessed):
            if not pred.ok:
                failed += 1
                console.echo(f"error: {pred.error}", err=True)
            line = out.row(pred)
            if line is not None:
                console.echo(line)
            console.advance(1)
    if failed:
        click.echo(f"error: {failed} of {len(paths) + len(problems)} inputs could not be classified", err=True)
        sys.exit(1)


@main.command("eval")
@click.argument("model", required=False, type=click.Path(exists=True))
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False),
              help="A folder with MNIST IDX files (t10k-images-idx3-ubyte[.gz] and labels), or one "
                   "sub-folder of images per class, named after the model's classes.")
@click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True,
              help="Which IDX files to read.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Images per model call.")
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True, help=_THREADS_HELP)
@click.option("--preprocess", type=click.Choice(["auto", "plain"]), default="auto", show_default=True,
              help="Image folders: " + _PREPROCESS_HELP + " IDX images are already model input.")
@click.option("--confusion", type=click.Path(dir_okay=False), help="Also draw the confusion matrix into this PNG.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr. [default: on for over 1,000 images when stderr is a terminal]")
def eval_cmd(model: str | None, data_dir: str, split: str, batch_size: int, threads: int, preprocess: str,
             confusion: str | None, as_json: bool, progress: bool | None) -> None:
    """Accuracy and confusion matrix of MODEL (.onnx; .pt or TorchScript when torch is installed) on --data.

    MODEL defaults to the MNIST model shipped with cnnx. Exit code 1 when an image
    of an image folder could not be read (it is named on stderr and left out).

    Example: cnnx eval model.onnx --data ~/.cache/cnnx/data --confusion confusion.png
    """
    _edge_env()
    from cnnx.backends import open_model
    from cnnx.runtime.evaluate import confusion_table, evaluate, load_labelled
    from cnnx.runtime.predict import resolve_model

    path = resolve_model(model)
    net = open_model(path, threads=threads)
    data = load_labelled(data_dir, net.spec, split)
    recipe = None if preprocess == "auto" else "plain"
    with _Console(len(data), progress, "evaluating") as console:
        result = evaluate(net, data, batch_size, recipe, progress=console.advance, model_name=str(path))
    if confusion:
        from cnnx.runtime.report import draw_confusion

        draw_confusion(result.confusion, result.classes, confusion,
                       f"{path.name} on {data_dir}: accuracy {100 * result.accuracy:.2f}%")
    for line in result.failed:
        click.echo(f"error: {line}", err=True)
    if as_json:
        _emit_json({**result.to_dict(), "confusion_png": confusion})
    else:
        kind = f"MNIST IDX, {split} split" if data.kind == "mnist-idx" else "image folders"
        click.echo(f"{path} on {data_dir} ({kind}): accuracy {100 * result.accuracy:.2f}% "
                   f"({result.correct}/{result.total}) in {result.seconds:.2f} s")
        click.echo(confusion_table(result))
        if confusion:
            click.echo(f"confusion matrix drawn in {confusion}")
    if result.failed:
        click.echo(f"error: {len(result.failed)} of {len(data)} images could not be read", err=True)
        sys.exit(1)
