"""Fixtures the runtime tests share: a model exported from the small trained run, digit files.

Imported by the test_runtime_* modules. The model is exported once per test session
(cached in pytest's base temp folder) by the real `cnnx export` command, as users
make it: mnist.onnx and mnist.torchscript, each checked against the checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnx.idx import read_idx
from tests.conftest import run_cli


@pytest.fixture(scope="session")
def exported(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder holding mnist.onnx and mnist.torchscript exported from ``trained_run``."""
    folder = tmp_path_factory.getbasetemp() / "runtime-model"
    if not (folder / "mnist.onnx").exists():
        run_cli("export", str(trained_run), "--format", "all", "--out", str(folder / "mnist.onnx"), check=True)
    return folder


@pytest.fixture(scope="session")
def onnx_model(exported: Path) -> Path:
    return exported / "mnist.onnx"


@pytest.fixture(scope="session")
def test_digits(mini_mnist: Path) -> tuple[np.ndarray, np.ndarray]:
    """The mini MNIST's 500 real test digits, (500, 28, 28) uint8, and labels (500,)."""
    return (read_idx(mini_mnist / "t10k-images-idx3-ubyte.gz"),
            read_idx(mini_mnist / "t10k-labels-idx1-ubyte.gz").astype(np.int64))


def write_pngs(images: np.ndarray, labels: np.ndarray, folder: Path) -> list[Path]:
    """One PNG per digit, folder/<index>_<label>.png, in order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (image, label) in enumerate(zip(images, labels)):
        paths.append(folder / f"{i:04d}_{int(label)}.png")
        Image.fromarray(image).save(paths[-1])
    return paths


@pytest.fixture(scope="session")
def digit_pngs(test_digits: tuple[np.ndarray, np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of the 500 test digits as PNG files named <index>_<label>.png."""
    folder = tmp_path_factory.getbasetemp() / "runtime-digit-pngs"
    if not folder.exists():
        write_pngs(*test_digits, folder)
    return folder


@pytest.fixture(scope="session")
def shipped_model() -> Path:
    """The MNIST model shipped in the package (99.5% on MNIST): no training needed, answers worth comparing."""
    from cnnx.runtime.predict import DEFAULT_MODEL

    if not DEFAULT_MODEL.is_file():
        pytest.skip("no default model in cnnx/models")
    return DEFAULT_MODEL
