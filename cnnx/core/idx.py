"""IDX files, the format MNIST is distributed in. numpy only: the edge runtime reads them too."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from cnnx.core.errors import DataNotFoundError

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzipped or not) as MNIST distributes them."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise DataNotFoundError(f"cannot read {path}: {exc}", "replace the file with a fresh copy") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataNotFoundError(f"{path} is not an unsigned-byte IDX file", "replace it with a fresh copy")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(dims)):
        raise DataNotFoundError(f"{path} is truncated: header says {dims}", "replace it with a fresh copy")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def _find_file(folders: list[Path], stem: str) -> Path | None:
    for folder in folders:
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def _mnist_folders(root: Path) -> list[Path]:
    # the folder itself, torchvision's layout (root/MNIST/raw) and a plain root/mnist
    return [root, root / "MNIST" / "raw", root / "mnist"]


def locate_mnist(root: Path, splits: tuple[str, ...] = tuple(MNIST_FILES)) -> dict[str, Path] | None:
    """Paths of the MNIST files of ``splits`` under ``root`` as {"train-images": ..., "test-labels": ...},
    or None when one is missing; each file gzipped or not."""
    found = {}
    for split in splits:
        stems = MNIST_FILES[split]
        for kind, stem in zip(("images", "labels"), stems, strict=False):
            path = _find_file(_mnist_folders(root), stem)
            if path is None:
                return None
            found[f"{split}-{kind}"] = path
    return found
