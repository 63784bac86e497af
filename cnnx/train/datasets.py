"""Datasets, loaded once into memory as uint8 tensors.

A per-sample PIL ``DataLoader`` spends most of an MNIST epoch decoding and
converting; one (N, C, H, W) uint8 tensor per split, normalised a batch at a
time on the training device, is many times faster and fits easily (MNIST: 47 MB).

Data is looked for in the data folder (``--data-dir``, else ``$CNNX_DATA_DIR``,
else ``~/.cache/cnnx/data``); when it is missing, torchvision downloads it there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cnnx.errors import ConfigError, DataNotFoundError
from cnnx.idx import MNIST_FILES, locate_mnist, read_idx

ENV_DATA_DIR = "CNNX_DATA_DIR"


@dataclass
class Split:
    x: torch.Tensor  # (N, C, H, W) uint8
    y: torch.Tensor  # (N,) int64 class indices

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Dataset:
    name: str
    train: Split
    test: Split
    classes: list[str]
    color: str  # Pillow mode: "L" or "RGB"
    mean: tuple[float, ...]  # per channel, of pixels in [0, 1], measured on the train split
    std: tuple[float, ...]
    preprocess: str  # runtime recipe name (cnnx.spec.RECIPES)
    source: str  # folder the files were read from
    hflip: bool = False  # a mirrored image keeps its label (photos: yes; digits: no)
    skipped: list[str] = field(default_factory=list)  # images left out, each "FILE: why" on one line

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.x.shape[1:])  # type: ignore[return-value]


def default_data_dir() -> Path:
    env = os.environ.get(ENV_DATA_DIR)
    return Path(env) if env else Path.home() / ".cache" / "cnnx" / "data"


# ---------------------------------------------------------------- MNIST

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)  # of the 60,000 training images


def _download_mnist(root: Path) -> None:
    """torchvision's own download (mirrors, md5 checks) into root/MNIST/raw."""
    from torchvision.datasets import MNIST

    root.mkdir(parents=True, exist_ok=True)
    MNIST(str(root), train=False, download=True)  # fetches all four files, verifies their md5


def load_mnist(data_dir: Path | None = None, download: bool = True) -> Dataset:
    root = Path(data_dir) if data_dir else default_data_dir()
    files = locate_mnist(root)
    if files is None and download:
        try:
            _download_mnist(root)
        except Exception as exc:  # URLError, RuntimeError from md5 checks, OSError ...
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise _missing_mnist(root, f"download failed: {reason}") from None
        files = locate_mnist(root)
    if files is None:
        raise _missing_mnist(root, "download disabled")
    splits = {}
    for split in MNIST_FILES:
        images = read_idx(files[f"{split}-images"])  # (N, 28, 28) uint8
        labels = read_idx(files[f"{split}-labels"])  # (N,) uint8
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataNotFoundError(
                f"MNIST {split} files disagree: images {images.shape}, labels {labels.shape}",
                f"replace the files in {files[f'{split}-images'].parent}",
            )
        splits[split] = Split(
            torch.from_numpy(images.copy()).unsqueeze(1),
            torch.from_numpy(labels.astype(np.int64)),
        )
    return Dataset(
        name="mnist",
        train=splits["train"],
        test=splits["test"],
        classes=[str(i) for i in range(10)],
        color="L",
        mean=MNIST_MEAN,
        std=MNIST_STD,
        preprocess="mnist-digit",
        source=str(files["train-images"].parent),
    )


def _missing_mnist(root: Path, why: str) -> DataNotFoundError:
    names = ", ".join(s + "[.gz]" for pair in MNIST_FILES.values() for s in pair)
    return DataNotFoundError(
        f"MNIST not found in {root} ({why})",
        f"put {names} there, or point --data-dir / ${ENV_DATA_DIR} at a folder holding them",
    )


# ---------------------------------------------------------------- registry

def _load_cifar10(data_dir: Path | None = None, download: bool = True) -> Dataset:
    from cnnx.train.cifar import load_cifar10

    return load_cifar10(data_dir, download=download)


LOADERS = {"mnist": load_mnist, "cifar10": _load_cifar10}


def dataset_kind(name: str) -> str:
    """A LOADERS key, or "folder" for a path to an ImageFolder tree (a registered name wins; say ./mnist for a folder)."""
    return name if name in LOADERS else "folder"


def load_dataset(name: str, data_dir: Path | None = None, download: bool = True, image_size: int | None = None,
                 grayscale: bool = False, val_split: float = 0.2, seed: int = 0, workers: int = 0) -> Dataset:
    """A registered dataset by name, or an ImageFolder tree by path (the options after ``download`` are for folders)."""
    if name in LOADERS:
        if image_size is not None or grayscale:
            raise ConfigError(f"--image-size and --grayscale apply to image folders, not to {name}",
                              f"{name} has its own size and colours; leave them out")
        return LOADERS[name](data_dir, download=download)
    if not Path(name).is_dir():
        raise DataNotFoundError(f"unknown dataset {name!r}",
                                f"choose one of: {', '.join(LOADERS)}, or give a folder of class sub-folders")
    from cnnx.train.folder import load_folder

    return load_folder(Path(name), image_size, grayscale, val_split, seed, workers)
