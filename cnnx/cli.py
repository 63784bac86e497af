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
@click.option("--preset", type=click.Choice(["default", "best", "one-epoch"]), default="default",
              show_default=True, help="Named option set; explicit options override it.")
@click.option("--arch", help="Architecture name (see `cnnx train --list-archs`). [default: the dataset's]")
@click.option("--epochs", type=int, help="Passes over the training data. [default: 8]")
@click.option("--batch-size", type=int, help="Images per optimiser step. [default: 256]")
@click.option("--lr", type=float, help="Peak (one-cycle) or initial learning rate. [default: 0.01]")
@click.option("--optimizer", type=click.Choice(["sgd", "adam", "adamw"]), help="[default: adamw]")
@click.option("--momentum", type=float, help="SGD momentum / Adam beta1. [default: 0.9]")
@click.option("--weight-decay", type=float, help="[default: 5e-4]")
@click.option("--schedule", type=click.Choice(["onecycle", "cosine", "constant"]), help="LR schedule. [default: onecycle]")
@click.option("--warmup", type=float, help="Fraction of steps spent warming up (one-cycle). [default: 0.2]")
@click.option("--label-smoothing", type=float, help="[default: 0]")
@click.option("--shift", type=int, help="Random-shift augmentation in pixels, 0 = off. [default: 2]")
@click.option("--seed", type=int, help="Seeds init, data order, augmentation, dropout. [default: 0]")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="[default: auto = CUDA when present]")
@click.option("--threads", type=int, help="torch CPU threads, 0 = torch's default. [default: 0]")
@click.option("--workers", type=int,
              help="DataLoader workers for datasets decoded from image files; MNIST is preloaded "
                   "into one tensor and needs none. [default: 0]")
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="Dataset folder (MNIST: the four IDX files, gzipped or not). "
                   "[default: $CNNX_DATA_DIR or ~/.cache/cnnx/data]")
@click.option("--download/--no-download", default=None, help="Download the dataset when missing. [default: on]")
@click.option("--out", type=click.Path(file_okay=False), help="Run folder. [default: artifacts/runs/<dataset>-<arch>-<time>]")
@click.option("--resume", type=click.Path(exists=True), help="Continue a run from its folder or a checkpoint.")
@click.option("--list-archs", is_flag=True, help="List the registered architectures and exit.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def train(dataset: str | None, preset: str, resume: str | None, list_archs: bool, as_json: bool,
          **options: Any) -> None:
    """Train DATASET (mnist) and write last.pt, best.pt and metrics.json into a run folder.

    Example: cnnx train mnist --epochs 1 --out artifacts/runs/quick
    """
    from cnnx.train import loop
    from cnnx.train.config import PRESETS, TrainConfig
    from cnnx.train.progress import TqdmReporter, archs_table

    if list_archs:
        click.echo(archs_table())
        return
    if resume is None and dataset is None:
        raise click.UsageError("give a DATASET (mnist) or --resume RUN")
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
