"""Commands that look at networks and data without training: ``cnnx summary`` and ``cnnx samples``."""

from __future__ import annotations

from pathlib import Path

import click

from cnnx.cli import emit_json, main
from cnnx.train.config import MAX_SIZE, MIN_SIZE, TrainConfig  # stdlib only: no torch for --help

# cnnx.core.plots.MAX_GRID_IMAGES, spelled out here so --help loads no numpy (tests/tools check they agree)
MAX_COUNT = 400


@main.command()
@click.argument("target", metavar="ARCH_CHECKPOINT_OR_RUN")
@click.option("--input-size", help="H, HxW or CxHxW. [default: the architecture's or the checkpoint's]")
@click.option("--batch", type=int, default=1, show_default=True, help="Batch size shown in the output shapes.")
@click.option("--arch", help="Architecture of a bare state_dict (a .pth saved by a seed script).")
@click.option("--classes", "num_classes", type=int, help="Output classes of an architecture. [default: 10]")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def summary(
    target: str, input_size: str | None, batch: int, arch: str | None, num_classes: int | None, as_json: bool
) -> None:
    """Layer-by-layer output shapes, parameters and multiply-accumulates of ARCH_CHECKPOINT_OR_RUN:
    a registered architecture, a checkpoint or state_dict, or a run folder. A run folder means
    its best.pt (its last.pt when it has no best.pt).

    Example: cnnx summary seed002-lenet --batch 64
    """
    from cnnx.tools.summary import format_summary, summarize_target

    result = summarize_target(target, input_size, batch, arch, num_classes)
    if as_json:
        emit_json(result)
    else:
        click.echo(format_summary(result))


@main.command()
@click.argument("dataset")
@click.option(
    "--out", type=click.Path(dir_okay=False), default="samples.png", show_default=True, help="PNG file to write."
)
@click.option("--count", type=int, default=64, show_default=True, help=f"Images in the grid, 1 to {MAX_COUNT}.")
@click.option("--columns", type=int, default=8, show_default=True, help="Images per row.")
@click.option(
    "--split", type=click.Choice(["train", "test"]), default="train", show_default=True, help="Which split to draw."
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the random pick; for a folder also of its train/test split, as `cnnx train --seed` draws it.",
)
@click.option("--first", is_flag=True, help="Take the first images instead of a random pick.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="As for `cnnx train`.")
@click.option("--download/--no-download", default=True, help="Download the dataset when missing. [default: on]")
@click.option(
    "--image-size",
    type=int,
    help=f"Image folders: resize to this many pixels square. [default: as cnnx train: the images' own, "
    f"{MIN_SIZE} to {MAX_SIZE}]",
)
@click.option(
    "--grayscale/--rgb",
    default=None,
    help="Image folders: show grey (L) or colour images, as cnnx train trains them. [default: as cnnx train: "
    "grey when the images hold no colour]",
)
@click.option("--val-split", type=float, default=0.2, show_default=True, help="Image folders: as for `cnnx train`.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def samples(
    dataset: str,
    out: str,
    count: int,
    columns: int,
    split: str,
    seed: int,
    first: bool,
    data_dir: str | None,
    download: bool,
    image_size: int | None,
    grayscale: bool | None,
    val_split: float,
    as_json: bool,
) -> None:
    """Save a labelled grid of DATASET's images (mnist, cifar10 or a folder), exactly as training sees them.

    An image of a folder that cannot be read is left out and named on stderr, as cnnx train does; a
    folder with none readable is an error.

    Example: cnnx samples cifar10 --out cifar10.png
    """
    from cnnx.tools.samples import save_samples

    TrainConfig(image_size=image_size, val_split=val_split)  # checked as cnnx train checks them, before any image
    result = save_samples(
        dataset,
        Path(out),
        count,
        split,
        None if first else seed,
        columns,
        Path(data_dir) if data_dir else None,
        download,
        image_size,
        grayscale,
        val_split,
    )
    skipped = result.get("skipped_images") or []
    if skipped:  # drawn without them, as training would train without them
        click.echo(f"warning: {len(skipped)} unreadable image(s) left out of the dataset:", err=True)
        for why in skipped:
            click.echo(f"warning: {why}", err=True)
    if as_json:
        emit_json(result)
    else:
        click.echo(
            f"wrote {result['path']} ({result['width']}x{result['height']}): {result['images']} "
            f"{result['split']} images of {result['dataset']}"
        )
