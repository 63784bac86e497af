"""IDX files, the format MNIST is distributed in. numpy only: the edge runtime reads them too."""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Iterable
from concurrent.futures import Future
from pathlib import Path

import numpy as np

from cnnx.core.errors import DataNotFoundError

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


# files being read by prefetch(), by resolved path: read_idx takes their bytes from here
_PREFETCHED: dict[Path, Future[bytes]] = {}


def _read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    # one call, not gzip.open's 8 KB reads: zlib inflates it without holding the GIL
    return gzip.decompress(data) if path.suffix == ".gz" else data


def prefetch(paths: Iterable[Path]) -> None:
    """Start reading (and decompressing) ``paths`` in a background thread; ``read_idx`` of one of them
    then waits for those bytes instead of reading the file itself.

    zlib inflates without holding the GIL, so the reading overlaps with work the caller does meanwhile:
    `cnnx train` starts it before importing torch, which hides the 0.2-0.3 s MNIST's gzip files take.
    Errors are kept for ``read_idx``, which reports them as it would have."""
    todo = {Path(p).resolve(): Future[bytes]() for p in paths}
    _PREFETCHED.update(todo)

    def read_all() -> None:
        for path, future in todo.items():
            try:
                future.set_result(_read_bytes(path))
            except BaseException as exc:  # handed to read_idx, which names the file
                future.set_exception(exc)

    threading.Thread(target=read_all, name="cnnx-idx-prefetch", daemon=True).start()


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzipped or not) as MNIST distributes them."""
    pending = _PREFETCHED.pop(Path(path).resolve(), None)
    try:
        data = pending.result() if pending is not None else _read_bytes(path)
    except (OSError, EOFError, zlib.error) as exc:
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
