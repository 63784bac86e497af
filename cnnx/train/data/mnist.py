"""MNIST from its four standard IDX files (gzipped or not), preloaded as uint8 tensors.

The files are looked for in the data folder, torchvision's ``MNIST/raw`` layout
and a ``mnist`` sub-folder; when missing, torchvision's own download (mirrors,
md5 checks) fetches them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cnnx.core.errors import DataNotFoundError
from cnnx.core.idx import MNIST_FILES, locate_mnist, read_idx
from cnnx.train.config import ENV_DATA_DIR, default_data_dir
from cnnx.train.data.base import Dataset, DatasetFacts, Split, locate_or_download

FACTS = DatasetFacts(
    name="mnist",
    classes=tuple(str(i) for i in range(10)),
    color="L",
    mean=(0.1307,),  # of the 60,000 training images
    std=(0.3081,),
    preprocess="mnist-digit",
    hflip=False,
    default_arch="mnist-bn16",
)


def _download(root: Path) -> None:
    """torchvision's own download (mirrors, md5 checks) into root/MNIST/raw."""
    from torchvision.datasets import MNIST

    MNIST(str(root), train=False, download=True)  # fetches all four files, verifies their md5


def _missing(root: Path, why: str) -> DataNotFoundError:
    names = ", ".join(s + "[.gz]" for pair in MNIST_FILES.values() for s in pair)
    return DataNotFoundError(
        f"MNIST not found in {root} ({why})",
        f"put {names} there, or point --data-dir / ${ENV_DATA_DIR} at a folder holding them",
    )


def load_mnist(data_dir: Path | None = None, download: bool = True) -> Dataset:
    root = Path(data_dir) if data_dir else default_data_dir()
    files = locate_or_download(root, locate_mnist, _download if download else None, _missing)
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
    return Dataset.of(FACTS, splits["train"], splits["test"], source=str(files["train-images"].parent))
