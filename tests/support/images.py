"""Small learnable image data in real on-disk formats: CIFAR-10 python batches and ImageFolder trees.

Class k is a colour of its own with noise and a bright square whose place
depends on k, so a network learns it in one short epoch and accuracy well above
chance proves the labels reached the loop intact.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def class_images(labels: np.ndarray, size: int = 32, seed: int = 0, channels: int = 3) -> np.ndarray:
    """uint8 (N, C, size, size) images of the given classes."""
    rng = np.random.default_rng(seed)
    palette = np.random.default_rng(1234).integers(30, 226, size=(max(labels.max() + 1, 10), 3))
    n = len(labels)
    x = palette[labels][:, :, None, None] + rng.normal(0, 25, size=(n, 3, size, size))
    s = size // 4
    for i, k in enumerate(labels):
        r, c = (k % 3) * s, (k // 3 % 3) * s
        x[i, :, r : r + s, c : c + s] = 255
    x = np.clip(x, 0, 255).astype(np.uint8)
    return x[:, :1] if channels == 1 else x


def write_cifar10(root: Path, per_batch: int = 100, test: int = 200) -> Path:
    """``root/cifar-10-batches-py`` exactly as the real archive lays it out (python pickles, protocol 2)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for b, name in enumerate(names):
        n = test if name == "test_batch" else per_batch
        labels = rng.integers(0, 10, n)
        data = class_images(labels, seed=b).reshape(n, 3072)  # rows: R plane, G plane, B plane
        entry = {
            "batch_label": f"batch {b + 1} of 5",
            "labels": labels.tolist(),
            "data": data,
            "filenames": [f"img_{b}_{i}.png" for i in range(n)],
        }
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    meta = {"num_cases_per_batch": per_batch, "label_names": CIFAR_CLASSES, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def cifar_tarball(folder: Path, path: Path) -> Path:
    """``cifar-10-python.tar.gz`` as published: the batches folder at the archive's top level."""
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return path


def write_image_folder(
    root: Path,
    classes: list[str],
    per_class: int = 20,
    size: tuple[int, int] = (40, 48),
    fmt: str = "PNG",
    seed: int = 0,
) -> Path:
    """``root/CLASS/NNN.png`` images of ``size`` (width, height) per class."""
    from PIL import Image

    labels = np.repeat(np.arange(len(classes)), per_class)
    x = class_images(labels, size=max(size), seed=seed)
    for i, k in enumerate(labels):
        d = root / classes[k]
        d.mkdir(parents=True, exist_ok=True)
        im = Image.fromarray(x[i].transpose(1, 2, 0)).resize(size)
        buf = io.BytesIO()
        im.save(buf, format=fmt)
        (d / f"{i:03d}.{fmt.lower().replace('jpeg', 'jpg')}").write_bytes(buf.getvalue())
    return root
