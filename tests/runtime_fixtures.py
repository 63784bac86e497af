"""Fixtures the runtime tests share: an ONNX file exported from the small trained run, digit files.

Imported by the test_runtime_* modules. The ONNX file is made once per test session
(cached in pytest's base temp folder) from the ``trained_run`` checkpoint, to the
export contract: input ``input`` (batch, 1, 28, 28) float32 normalised, output
``logits`` (batch, 10), the spec in ``metadata_props``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnx.idx import read_idx


def export_onnx(checkpoint: Path, out: Path) -> Path:
    import onnx
    import torch

    from cnnx.spec import ModelSpec
    from cnnx.train.checkpoint import load_checkpoint
    from cnnx.train.models import build_model

    state = load_checkpoint(checkpoint)
    spec = ModelSpec.from_dict(state["spec"])
    model = build_model(spec.arch, spec.num_classes)
    model.load_state_dict(state["model"])
    model.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model, (torch.zeros(1, *spec.input_shape),), str(out), dynamo=False,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    proto = onnx.load(str(out))
    for key, value in spec.to_onnx_metadata().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(out))
    return out


@pytest.fixture(scope="session")
def onnx_model(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.getbasetemp() / "runtime-model" / "mnist.onnx"
    if not path.exists():
        export_onnx(trained_run, path)
    return path


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
