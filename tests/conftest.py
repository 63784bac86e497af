"""Shared fixtures: the shipped mini MNIST (1,000 train / 500 test real digits), a small trained run,
a model exported from it by the real `cnnx export`, the shipped model, digit files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cnnx.core.idx import read_idx
from tests.support import MINI_MNIST, run_cli, write_pngs


@pytest.fixture(scope="session")
def mini_mnist() -> Path:
    return MINI_MNIST


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-epoch run of the default architecture on the mini MNIST (a few seconds on a CPU)."""
    pytest.importorskip("torch")
    from cnnx.train.config import TrainConfig
    from cnnx.train.loop import train

    out = tmp_path_factory.mktemp("run") / "run"
    train(TrainConfig(epochs=2, batch_size=32, data_dir=str(MINI_MNIST), download=False, out=str(out), device="cpu"))
    return out


@pytest.fixture(scope="session")
def export_all(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    """`cnnx export RUN --format all --json` of ``trained_run`` (its best.pt) by the real CLI, once per
    session, each format checked against the checkpoint: (folder of mnist.* files, the JSON report,
    stderr)."""
    folder = tmp_path_factory.mktemp("runtime-model")
    proc = run_cli(
        "export", str(trained_run), "--format", "all", "--out", str(folder / "mnist.onnx"), "--json", check=True
    )
    return folder, json.loads(proc.stdout), proc.stderr  # stdout is the JSON report only; progress went to stderr


@pytest.fixture(scope="session")
def exported(export_all: tuple[Path, dict[str, Any], str]) -> Path:
    """The folder holding mnist.onnx, mnist.torchscript and the other formats ``export_all`` wrote."""
    return export_all[0]


@pytest.fixture(scope="session")
def onnx_model(exported: Path) -> Path:
    return exported / "mnist.onnx"


@pytest.fixture(scope="session")
def shipped_model() -> Path:
    """The MNIST model shipped in the package (99.5% on MNIST): no training needed, answers worth comparing."""
    from cnnx.runtime.predict import DEFAULT_MODEL

    if not DEFAULT_MODEL.is_file():
        pytest.skip("no default model in cnnx/models")
    return DEFAULT_MODEL


@pytest.fixture(scope="session")
def test_digits(mini_mnist: Path) -> tuple[np.ndarray, np.ndarray]:
    """The mini MNIST's 500 real test digits, (500, 28, 28) uint8, and labels (500,)."""
    return (
        read_idx(mini_mnist / "t10k-images-idx3-ubyte.gz"),
        read_idx(mini_mnist / "t10k-labels-idx1-ubyte.gz").astype(np.int64),
    )


@pytest.fixture(scope="session")
def digit_pngs(test_digits: tuple[np.ndarray, np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of the 500 test digits as PNG files named <index>_<label>.png."""
    folder = tmp_path_factory.getbasetemp() / "runtime-digit-pngs"
    if not folder.exists():
        write_pngs(*test_digits, folder)
    return folder
