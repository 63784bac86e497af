"""Datasets: one registry of the named ones (their facts and loaders), and image folders by path.

Data is looked for in the data folder (``--data-dir``, else ``$CNNX_DATA_DIR``,
else ``~/.cache/cnnx/data``); when it is missing, torchvision downloads it there.
A name that is not registered is a path to an ImageFolder tree
(``cnnx.train.data.folder``). A new dataset is one module with ``FACTS`` and a
loader, added to ``REGISTRY``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnx.core.errors import ConfigError, DataNotFoundError
from cnnx.train.config import BATCH, ENV_DATA_DIR, LR, TrainConfig, default_data_dir, folder_batch, folder_lr
from cnnx.train.data import cifar10, folder, mnist
from cnnx.train.data.base import Dataset, DatasetFacts, Split
from cnnx.train.models import get_arch

__all__ = [
    "ENV_DATA_DIR",
    "REGISTRY",
    "Dataset",
    "DatasetFacts",
    "Split",
    "dataset_kind",
    "default_data_dir",
    "facts_of",
    "load_dataset",
]

FOLDER_ARCH = "cifar-bn"  # what `cnnx train FOLDER` trains without --arch, unless its images fit another default


@dataclass(frozen=True)
class Registered:
    facts: DatasetFacts
    load: Callable[[Path | None, bool], Dataset]  # (data folder or None, download?) -> the dataset


REGISTRY: dict[str, Registered] = {
    "mnist": Registered(mnist.FACTS, mnist.load_mnist),
    "cifar10": Registered(cifar10.FACTS, cifar10.load_cifar10),
}


def dataset_kind(name: str) -> str:
    """A REGISTRY key, or "folder" for a path to an ImageFolder tree.

    A registered name wins; say ./mnist for a folder of that name."""
    return name if name in REGISTRY else "folder"


def facts_of(name: str) -> DatasetFacts | None:
    """The registered facts of ``name``; None for an image folder (its facts come from its files)."""
    entry = REGISTRY.get(name)
    return entry.facts if entry else None


def default_arch(name: str, input_shape: tuple[int, int, int] | None = None) -> str:
    """The architecture ``cnnx train NAME`` trains without --arch. A folder whose images (``input_shape``)
    are those of a registered dataset trains that dataset's default (grey 28x28: mnist-bn16)."""
    facts = facts_of(name)
    if facts:
        return facts.default_arch
    for entry in REGISTRY.values():
        if get_arch(entry.facts.default_arch).input_shape == input_shape:
            return entry.facts.default_arch
    return FOLDER_ARCH


# the outlier loss's weight against the class loss, by kind: Hendrycks et al.'s for the uniform
# cross-entropy, Liu et al.'s for the energy hinges (cnnx.train.honesty)
OUTLIER_WEIGHTS = {"uniform": 0.5, "energy": 0.1}


def settled(cfg: TrainConfig, data: Dataset) -> TrainConfig:
    """``cfg`` with what its options left open (None) filled in from ``data``, so that checkpoints and
    metrics.json record what the run really did and a resumed run does it again."""
    folder = dataset_kind(cfg.dataset) == "folder"
    batch = cfg.batch_size or (folder_batch(len(data.train)) if folder else BATCH)
    found: dict[str, Any] = {
        "arch": default_arch(cfg.dataset, data.input_shape),
        "batch_size": batch,
        "lr": folder_lr(batch) if folder else LR,
        "flip": data.hflip,
        # outlier exposure needs non-images of the kind users mistake for the classes: cnnx draws
        # them for digits (cnnx.train.data.negatives), through the digit recipe
        "outliers": OUTLIER_WEIGHTS[cfg.outlier_loss] if data.preprocess == "mnist-digit" else 0.0,
        # the folder the files came from ($CNNX_DATA_DIR, the cache, a download): export's parity check and
        # a resume read the same images without the environment the run had
        "data_dir": data.source,
    }
    if folder:
        found.update(image_size=data.input_shape[1], grayscale=data.color == "L")
    return dataclasses.replace(cfg, **{k: v for k, v in found.items() if getattr(cfg, k) is None})


def load_dataset(
    name: str,
    data_dir: Path | None = None,
    download: bool = True,
    image_size: int | None = None,
    grayscale: bool | None = None,
    val_split: float = 0.2,
    seed: int = 0,
    workers: int = 0,
) -> Dataset:
    """A registered dataset by name, or an ImageFolder tree by path (the options after ``download`` are for folders)."""
    if name in REGISTRY:
        if image_size is not None or grayscale:
            raise ConfigError(
                f"--image-size and --grayscale apply to image folders, not to {name}",
                f"{name} has its own size and colours; leave them out",
            )
        return REGISTRY[name].load(data_dir, download)
    if not Path(name).is_dir():
        raise DataNotFoundError(
            f"unknown dataset {name!r}", f"choose one of: {', '.join(REGISTRY)}, or give a folder of class sub-folders"
        )
    return folder.load_folder(Path(name), image_size, grayscale, val_split, seed, workers)
