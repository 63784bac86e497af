"""CIFAR-10 from its standard ``cifar-10-batches-py`` folder, preloaded as uint8 tensors.

The folder is looked for in the data folder (and its ``cifar-10-batches-py``
sub-folder, where torchvision extracts it); when missing, torchvision's own
``CIFAR10(download=True)`` fetches and checks it (170 MB). The batch files are
pickles: they are read with an unpickler that builds only numpy arrays and
builtins, so a tampered file cannot run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnx.core.contract import first_line
from cnnx.core.errors import DataNotFoundError
from cnnx.train.config import ENV_DATA_DIR, default_data_dir
from cnnx.train.data.base import Dataset, DatasetFacts, Split, locate_or_download

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
META_FILE = "batches.meta"
FACTS = DatasetFacts(
    name="cifar10",
    classes=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    color="RGB",
    # per-channel mean and std of the 50,000 training images' pixels in [0, 1]; the seeds'
    # Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)) is a guess that leaves the inputs off-centre
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
    preprocess="resize",
    hflip=True,
    default_arch="cifar-bn",
)

# Everything a CIFAR batch pickle may reference: numpy's array reconstruction, nothing else.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # how Python 3 pickles bytes at protocol 2
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_pickle(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            # latin1: the files were pickled by Python 2; its str keys and bytes come back as str
            entry = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as exc:
        reason = first_line(exc)
        raise DataNotFoundError(
            f"{path} is not a readable CIFAR-10 batch ({reason})", "replace the folder with a fresh copy"
        ) from None
    if not isinstance(entry, dict):
        raise DataNotFoundError(f"{path} is not a CIFAR-10 batch (no dict inside)", "replace it with a fresh copy")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, 32, 32) uint8 images and (N,) int64 labels of one batch file."""
    entry = _read_pickle(path)
    data, labels = entry.get("data"), entry.get("labels", entry.get("fine_labels"))
    if not isinstance(data, np.ndarray) or labels is None:
        raise DataNotFoundError(f"{path} lacks 'data' or 'labels'", "replace it with a fresh copy")
    labels = np.asarray(labels, dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DataNotFoundError(
            f"{path}: data {data.shape} {data.dtype} and {len(labels)} labels are not CIFAR-10's (N, 3072) uint8",
            "replace it with a fresh copy",
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= len(FACTS.classes)):
        raise DataNotFoundError(f"{path}: labels outside 0..9", "replace it with a fresh copy")
    # rows are 1024 red, 1024 green, 1024 blue values, each plane row-major: (N, 3, 32, 32)
    return data.reshape(-1, 3, 32, 32), labels


def locate_cifar10(root: Path) -> Path | None:
    """The folder under ``root`` holding all CIFAR-10 python batches, or None."""
    names = (*TRAIN_FILES, *TEST_FILES, META_FILE)
    for folder in (root, root / FOLDER, root / "cifar10" / FOLDER, root / "CIFAR10" / FOLDER):
        if all((folder / n).is_file() for n in names):
            return folder
    return None


def _download(root: Path) -> None:
    """torchvision's download: the tar.gz, its md5, extraction to root/cifar-10-batches-py, every file's md5."""
    from torchvision.datasets import CIFAR10

    CIFAR10(str(root), train=False, download=True)


def _missing(root: Path, why: str) -> DataNotFoundError:
    return DataNotFoundError(
        f"CIFAR-10 not found in {root} ({why})",
        f"put the extracted {FOLDER} folder (data_batch_1..5, test_batch, batches.meta) there, "
        f"or point --data-dir / ${ENV_DATA_DIR} at a folder holding it",
    )


def load_cifar10(data_dir: Path | None = None, download: bool = True) -> Dataset:
    root = Path(data_dir) if data_dir else default_data_dir()
    folder = locate_or_download(root, locate_cifar10, _download if download else None, _missing)
    meta = _read_pickle(folder / META_FILE)
    classes = [str(c) for c in meta.get("label_names", FACTS.classes)]
    splits = {}
    for split, files in (("train", TRAIN_FILES), ("test", TEST_FILES)):
        parts = [_read_batch(folder / f) for f in files]
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        splits[split] = Split(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y))
    if len(classes) != len(FACTS.classes):
        raise DataNotFoundError(
            f"{folder / META_FILE} names {len(classes)} classes, CIFAR-10 has 10", "replace it with a fresh copy"
        )
    return Dataset.of(FACTS, splits["train"], splits["test"], source=str(folder), classes=classes)
