"""The inputs every export is checked on: real test images, random inputs, int8 calibration images.

Real images are the model's own test split: the dataset folder given with
``--data-dir``, else the folder the checkpoint was trained from, else
``$CNNX_DATA_DIR`` / the cache, else the fixed sample shipped in ``cnnx/samples``
(500 MNIST test digits and 1,000 training digits). All are normalised with the
model spec's own mean/std, as the runtime will normalise them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnx.core.contract import normalise
from cnnx.core.errors import DataNotFoundError
from cnnx.core.spec import ModelSpec
from cnnx.train.data import REGISTRY, Dataset, load_dataset
from cnnx.train.models import get_arch

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
RANDOM_BATCHES = (1, 2, 7, 64)
CALIBRATION_IMAGES = 500  # training images the int8 calibration sees


@dataclass
class ParityData:
    """Inputs every format is checked on, already normalised with the model's own mean/std."""

    test_x: np.ndarray  # (N, C, H, W) float32, real test images
    test_y: np.ndarray  # (N,) int64 labels
    calibration: np.ndarray  # (M, C, H, W) float32, training images for int8 calibration
    random: dict[int, np.ndarray]  # batch size -> (B, C, H, W) float32 standard normal
    source: dict[str, Any]  # what the real images are, for the report


def _load_folder(trained: str, data_dir: Path | None, config: dict[str, Any]) -> Dataset:
    """An image-folder model's test split, from ``data_dir`` when given, else the folder it was trained on;
    split and resized as training did it, with the checkpoint's saved options."""
    folder = data_dir or Path(trained)
    if not folder.is_dir():
        raise DataNotFoundError(
            f"the image folder the model was trained on, {trained}, is not there",
            "give the folder's new place with --data-dir",
        )
    options = {k: config[k] for k in ("image_size", "grayscale", "val_split", "seed") if k in config}
    return load_dataset(str(folder), None, download=False, **options)


def _load(spec: ModelSpec, data_dir: Path | None, config: dict[str, Any]) -> tuple[Dataset, bool]:
    """The dataset the model was trained on, and whether it is only the shipped sample."""
    name = config.get("dataset") or spec.dataset or get_arch(spec.arch).dataset
    if name not in REGISTRY:  # an image folder: its name is its path
        return _load_folder(name, data_dir, config), False
    trained = config.get("data_dir")
    folders: list[Path | None] = [Path(trained)] if trained and Path(trained).is_dir() else []
    folders = [data_dir] if data_dir else [*folders, None]  # None: $CNNX_DATA_DIR, else the cache
    for folder in folders:
        try:
            return load_dataset(name, folder, download=False), False
        except DataNotFoundError as exc:
            missing = exc
    sample = SAMPLES / name
    if data_dir is not None or not sample.is_dir():
        raise missing
    return load_dataset(name, sample, download=False), True


def load_images(
    spec: ModelSpec, data_dir: Path | None = None, train_config: dict[str, Any] | None = None
) -> ParityData:
    """The model's test split: ``data_dir``, the training data folder, $CNNX_DATA_DIR, else the shipped sample."""
    data, is_sample = _load(spec, data_dir, train_config or {})
    name = data.name
    if tuple(data.test.x.shape[1:]) != tuple(spec.input_shape):
        raise DataNotFoundError(
            f"the model takes {spec.input_shape} images but {name} has {tuple(data.test.x.shape[1:])}",
            "check --arch, or point --data-dir at the dataset the model was trained on",
        )
    rng = np.random.default_rng(0)  # fixed: the same images and noise on every export
    pick = np.sort(rng.choice(len(data.train), min(CALIBRATION_IMAGES, len(data.train)), replace=False))
    shape = tuple(spec.input_shape)
    return ParityData(
        test_x=normalise(data.test.x.numpy(), spec.mean, spec.std),
        test_y=data.test.y.numpy(),
        calibration=normalise(data.train.x[torch.from_numpy(pick)].numpy(), spec.mean, spec.std),
        random={b: rng.standard_normal((b, *shape)).astype(np.float32) for b in RANDOM_BATCHES},
        source={
            "dataset": name,
            "split": "test",
            "images": len(data.test),
            "folder": data.source,
            "sample": is_sample,
            "random_batches": list(RANDOM_BATCHES),
        },
    )
