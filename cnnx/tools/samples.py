"""``cnnx samples DATASET``: a labelled grid of a dataset's images, as the seeds look at theirs with make_grid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cnnx.core.errors import ConfigError
from cnnx.core.fileio import folder_problem
from cnnx.train.data import load_dataset


def save_samples(
    dataset: str,
    out: Path,
    count: int = 64,
    split: str = "train",
    seed: int | None = 0,
    columns: int = 8,
    data_dir: Path | None = None,
    download: bool = True,
    image_size: int | None = None,
    grayscale: bool | None = None,  # None: as cnnx train settles it, from the images' colours
    val_split: float = 0.2,
    workers: int = 0,
) -> dict[str, Any]:
    """Draw ``count`` images of ``split`` (a seeded random pick, or the first ones when ``seed`` is None)."""
    from cnnx.core import plots

    if not 1 <= count <= plots.MAX_GRID_IMAGES:
        raise ConfigError(f"--count must be 1 to {plots.MAX_GRID_IMAGES}, got {count}")
    if split not in ("train", "test"):
        raise ConfigError(f"--split must be train or test, got {split!r}")
    why = folder_problem(Path(out).parent)  # refused now, not after the dataset is read
    if why:
        raise ConfigError(f"cannot write {out}: {why}", "choose a writable --out path")
    data = load_dataset(
        dataset,
        data_dir,
        download=download,
        image_size=image_size,
        grayscale=grayscale,
        val_split=val_split,
        seed=0 if seed is None else seed,
        workers=workers,
    )
    part = data.train if split == "train" else data.test
    count = min(count, len(part))
    if seed is None:
        idx = torch.arange(count)
    else:
        idx = torch.randperm(len(part), generator=torch.Generator().manual_seed(seed))[:count]
    labels = [data.classes[i] for i in part.y[idx].tolist()]
    c, h, w = data.input_shape
    title = f"{data.name} {split}: {count} of {len(part):,} images, {w}x{h} {data.color}"
    path = plots.save_grid(part.x[idx].numpy(), labels, Path(out), ncols=columns, title=title)
    width, height = plots.png_size(path)
    return {
        "path": str(path),
        "dataset": data.name,
        "split": split,
        "images": count,
        "labels": labels,
        "classes": data.classes,
        "color": data.color,  # as training sees them: "L" or "RGB", at input_shape (C, H, W)
        "input_shape": list(data.input_shape),
        "width": width,
        "height": height,
        "skipped_images": data.skipped,  # image-folder files that could not be read, each "FILE: why"
    }
