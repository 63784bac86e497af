"""Training-side commands: ``cnnx train``, ``cnnx summary``, ``cnnx samples``.

Only stdlib and click at import time; torch is imported inside each command.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from cnnx.cli import emit_json, main
from cnnx.core.spec import OPENSET_METHODS
from cnnx.train.config import (  # stdlib only: no torch for --help
    BATCH,
    DEVICES,
    LR,
    MAX_SIZE,
    MIN_BATCH,
    MIN_SIZE,
    MIN_STEPS,
    OPTIMIZERS,
    OUTLIER_LOSSES,
    PRESET_ARCH_DATASET,
    PRESETS,
    SCHEDULES,
    TrainConfig,
    default_data_dir,
    preset_options,
)

# ---------------------------------------------------------------- train

_TRAIN_HELP_DEFAULTS = (
    "Defaults were chosen by measurement on a 2-core CPU (README, bench/train_speed.py). "
    "Data-parallel over N processes or GPUs: torchrun --standalone --nproc-per-node N -m cnnx "
    "train ...; --batch-size is then the global batch, shared out over the N processes."
)


@main.command(epilog=_TRAIN_HELP_DEFAULTS)
@click.argument("dataset", required=False)
@click.option(
    "--preset",
    type=click.Choice(list(PRESETS)),
    default="default",
    show_default=True,
    help="Named option set, explicit options override it: "
    + "; ".join(f"{k} = {', '.join(f'{o} {v}' for o, v in p.items()) or 'the defaults'}" for k, p in PRESETS.items())
    + f" (a preset's arch applies to {PRESET_ARCH_DATASET} only)",
)
@click.option(
    "--arch",
    help="Architecture name (see `cnnx train --list-archs`). [default: the dataset's; "
    "image folders: mnist-bn16 for grey 28x28 images, else cifar-bn]",
)
@click.option("--epochs", type=int, help=f"Passes over the training data. [default: {TrainConfig.epochs}]")
@click.option(
    "--batch-size",
    type=int,
    help=f"Images per optimiser step. [default: {BATCH}; image folders: halved (to {MIN_BATCH} at least) until an "
    f"epoch has {MIN_STEPS} steps]",
)
@click.option(
    "--lr",
    type=float,
    help=f"Peak (one-cycle) or initial learning rate. [default: {LR}; image folders: {LR} x batch size / {BATCH}]",
)
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), help=f"[default: {TrainConfig.optimizer}]")
@click.option("--momentum", type=float, help=f"SGD momentum / Adam beta1. [default: {TrainConfig.momentum}]")
@click.option("--weight-decay", type=float, help=f"[default: {TrainConfig.weight_decay}]")
@click.option(
    "--schedule",
    type=click.Choice(SCHEDULES),
    help=f"LR schedule. [default: {TrainConfig.schedule}]",
)
@click.option(
    "--warmup", type=float, help=f"Fraction of steps spent warming up (one-cycle). [default: {TrainConfig.warmup}]"
)
@click.option("--label-smoothing", type=float, help=f"[default: {TrainConfig.label_smoothing}]")
@click.option("--shift", type=int, help=f"Random-shift augmentation in pixels, 0 = off. [default: {TrainConfig.shift}]")
@click.option(
    "--distort",
    type=float,
    help="Strength of the handwriting augmentation: rotation, scale, aspect, shear, elastic warp, "
    f"thicker strokes, blur; 0 = off, 1 = the measured recipe. [default: {TrainConfig.distort}]",
)
@click.option(
    "--holdout",
    type=float,
    help="Fraction of the training images held out of training, to fit the calibration temperature "
    "and the refusal threshold (never the test images), below 0.5; 0, or fewer than 50 images, = neither. "
    f"[default: {TrainConfig.holdout}]",
)
@click.option(
    "--outliers",
    type=float,
    help="Weight of the loss on generated non-digits (letters, scribbles, shapes, clutter) that teaches "
    "the model to refuse them; 0 = off. [default: for digits 0.1 (energy) or 0.5 (uniform), 0 otherwise]",
)
@click.option(
    "--outlier-loss",
    type=click.Choice(OUTLIER_LOSSES),
    help="How the non-digits train: energy (keep their refusal score below a margin and the digits' above "
    "another) or uniform (cross-entropy to a flat output, the recipe before). "
    f"[default: {TrainConfig.outlier_loss}]",
)
@click.option(
    "--refuse",
    type=float,
    help="Fraction of the held-out real images the refusal threshold may refuse (e.g. 0.005 = 0.5%), "
    f"below 0.5; 0 = never refuse. [default: {TrainConfig.refuse}]",
)
@click.option(
    "--refusal-score",
    type=click.Choice(OPENSET_METHODS),
    help="How the refusal scores an image: energy (T * logsumexp(logits / T); refuses more non-digits at the "
    "same share of real images refused) or msp (the largest calibrated probability). "
    f"[default: {TrainConfig.refusal_score}]",
)
@click.option("--seed", type=int, help=f"Seeds init, data order, augmentation, dropout. [default: {TrainConfig.seed}]")
@click.option("--device", type=click.Choice(DEVICES), help="[default: auto = CUDA when present]")
@click.option("--threads", type=int, help="torch CPU threads, 0 = torch's default. [default: 0]")
@click.option(
    "--workers",
    type=int,
    help="Threads decoding an image folder (once, before training); MNIST and CIFAR-10 "
    "are read as whole arrays and need none. [default: 0 = one]",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    help="Dataset folder (MNIST: the four IDX files, gzipped or not; CIFAR-10: the "
    "cifar-10-batches-py folder or its parent). [default: $CNNX_DATA_DIR or ~/.cache/cnnx/data]",
)
@click.option(
    "--image-size",
    type=int,
    help="Image folders: resize images to this many pixels square. [default: the images' median "
    f"shorter side, {MIN_SIZE} to {MAX_SIZE}]",
)
@click.option(
    "--grayscale/--rgb",
    default=None,
    help="Image folders: train on grey (L) or colour images. [default: grey when the images hold no colour]",
)
@click.option(
    "--val-split",
    type=float,
    help="Image folders without train/ and test/ sub-folders: fraction of each class held out "
    "for testing, chosen with --seed. [default: 0.2]",
)
@click.option(
    "--flip/--no-flip",
    default=None,
    help="Random horizontal flips. [default: on for CIFAR-10; off for digits and image folders, where a "
    "mirror image may be another class]",
)
@click.option("--save-every", type=int, help="Also keep epoch-NNN.pt every N epochs. [default: 0 = off]")
@click.option(
    "--save-min-acc",
    type=float,
    help="Write best.pt and epoch-NNN.pt only from this accuracy up, a fraction (0.97 = 97%): on the "
    "held-out images, or the test split when none are held out (the accuracy best.pt is chosen by); "
    "last.pt is always written. [default: 0]",
)
@click.option(
    "--tensorboard/--no-tensorboard",
    default=None,
    help="Write loss, accuracy, learning rate and sample images to RUN/tensorboard. [default: off]",
)
@click.option(
    "--amp/--no-amp",
    default=None,
    help="Mixed precision: bfloat16 autocast of the training forward pass (fast on CPUs with AMX and on "
    "GPUs with tensor cores; slower on CPUs without bf16 instructions). Weights, checkpoints and "
    "evaluation stay float32. [default: on for a CPU with AMX, where it was measured to keep the accuracy; "
    "else off]",
)
@click.option(
    "--plots/--no-plots", default=None, help="Draw curves.png and confusion.png into the run folder. [default: on]"
)
@click.option("--download/--no-download", default=None, help="Download the dataset when missing. [default: on]")
@click.option(
    "--out", type=click.Path(file_okay=False), help="Run folder. [default: artifacts/runs/<dataset>-<arch>-<time>]"
)
@click.option("--resume", type=click.Path(exists=True), help="Continue a run from its folder or a checkpoint.")
@click.option(
    "--list-archs", is_flag=True, help="List the registered architectures (with --json: as a JSON list) and exit."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def train(
    dataset: str | None, preset: str, resume: str | None, list_archs: bool, as_json: bool, **options: Any
) -> None:
    """Train DATASET (mnist, cifar10, or a folder of class sub-folders) and write last.pt, best.pt,
    metrics.json, curves.png and confusion.png into a run folder.

    Example: cnnx train mnist --epochs 1 --out artifacts/runs/quick
    """
    if dataset == "mnist" and resume is None and not list_archs:
        prefetch_mnist(options["data_dir"])  # while torch imports
    from cnnx.train import distributed as ddp
    from cnnx.train import loop
    from cnnx.train.progress import TqdmReporter, archs_list, archs_table

    if list_archs:
        emit_json(archs_list()) if as_json else click.echo(archs_table())
        return
    if resume is None and dataset is None:
        raise click.UsageError("give a DATASET (mnist, cifar10 or a folder) or --resume RUN")
    if resume is not None and any(v is not None for v in options.values()):
        raise click.UsageError("--resume continues a run with its saved options; give no other training options")
    dataset = dataset or "mnist"
    settings = {**preset_options(preset, dataset), **{k: v for k, v in options.items() if v is not None}}
    cfg = TrainConfig(dataset=dataset, **settings)
    reporter = TqdmReporter()  # progress on stderr, --json or not
    is_main = ddp.world_from_env().is_main  # ranks 1.. of a torchrun job: rank 0 reports for all
    try:
        result = loop.train(cfg, reporter, resume=Path(resume) if resume else None)
    except KeyboardInterrupt:
        run_dir = reporter.run_dir or (
            str(Path(resume).parent if Path(resume).is_file() else resume) if resume else cfg.out
        )
        if is_main:  # Ctrl-C reaches every rank of a torchrun job; one says it
            click.echo(f"\n{_interrupted_message(run_dir)}", err=True)
        sys.exit(130)
    if not is_main:
        return
    if as_json:
        emit_json(result.summary)
    else:
        click.echo(_finished_line(result.summary))


def prefetch_mnist(data_dir: str | None) -> None:
    """Start reading MNIST's files in a thread, when they are there: zlib inflates them without the GIL,
    so importing torch and reading the data overlap (the 0.2-0.3 s of reading no longer follows the import)."""
    from cnnx.core.idx import locate_mnist, prefetch

    files = locate_mnist(Path(data_dir) if data_dir else default_data_dir())
    if files is not None:
        prefetch(files.values())


def _epochs(n: int) -> str:
    return f"{n} epoch{'s' if n != 1 else ''}"


CHOSEN_BY = {"holdout_accuracy": "held-out accuracy", "test_accuracy": "test accuracy"}


def _finished_line(s: dict[str, Any]) -> str:
    """The run's last line: what it reached and which checkpoints it left (metrics.json's summary)."""
    if s.get("nothing_to_do"):
        return f"nothing to do: {s['reason']}"
    if not s["epochs_trained"]:  # last.pt held every epoch, but the run stopped before writing the rest
        wrote = "metrics.json and the plots" if s["plots"] else "metrics.json"
        held = f"{'all ' if s['epochs'] > 1 else ''}{_epochs(s['epochs'])}"
        return f"nothing left to train: {s['run_dir']} holds {held}; wrote {wrote}"
    by = s["chosen_by"]
    done = (
        f"done: {s['arch']} on {s['dataset']}, {_epochs(s['epochs'])}, test accuracy {100 * s['final_accuracy']:.2f}%"
    )
    ran = f"in {s['wall_seconds']:.1f} s on {s['device']}"
    if s["best_checkpoint"] is None:
        bar, reached = s["config"]["save_min_acc"], max((m[by] for m in s["epoch_metrics"] if by in m), default=0.0)
        return (
            f"{done} {ran}; no epoch reached --save-min-acc {bar:g} ({100 * bar:.2f}%) in {CHOSEN_BY[by]} "
            f"(best {100 * reached:.2f}%): no best.pt, only last.pt in {s['run_dir']}"
        )
    best = f"best.pt: epoch {s['best_epoch']}, test accuracy {100 * s['best_accuracy']:.2f}%, chosen by {CHOSEN_BY[by]}"
    return f"{done} ({best}) {ran}; checkpoints in {s['run_dir']}"


def _interrupted_message(run_dir: str | None) -> str:
    """What Ctrl-C left behind, read from the run folder itself: only whole epochs are ever saved.

    A mid-epoch checkpoint would resume from a different data order and RNG position than an
    uninterrupted run, so the unfinished epoch is dropped and redone on resume.
    """
    from cnnx.core.contract import LAST
    from cnnx.core.errors import CheckpointError
    from cnnx.train.checkpoint import load_checkpoint

    try:
        state = load_checkpoint(Path(run_dir) / LAST) if run_dir else None
    except CheckpointError:
        state = None
    if state is None:
        return "interrupted before the first epoch finished; nothing was saved: run the same command again"
    done, total = state["epoch"], state["config"]["epochs"]
    if done >= total:
        return (
            f"interrupted after the last epoch; {run_dir}/last.pt holds {'all ' if total > 1 else ''}{_epochs(total)}: "
            f"cnnx train --resume {run_dir} writes the rest (metrics.json, plots)"
        )
    return (
        f"interrupted during epoch {done + 1} of {total}; {run_dir}/last.pt holds the {done} finished "
        f"epoch{'s' if done != 1 else ''} (the unfinished one is redone): cnnx train --resume {run_dir}"
    )


# ---------------------------------------------------------------- summary, samples (seed-notes tooling)
