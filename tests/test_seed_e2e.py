"""Weights saved by the seed scripts' own classes go to the edge: export (both parity gates) -> infer.

Every seed class's state_dict loading with identical logits is in test_train_zoo; training -> export ->
infer on generated CIFAR-10 and image folders is in test_train_cifar and test_train_folder. Here, one
colour and one MNIST network from a bare ``torch.save(model.state_dict())``, as the seeds save them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from tests.support import (  # noqa: E402
    REPO,
    infer_json,  # noqa: E402
    run_cli,
)
from tests.support.images import write_cifar10  # noqa: E402
from tests.support.seed_nets import Module, lenet  # noqa: E402


@pytest.mark.parametrize(
    "arch, seed_class, shape, fmt",
    [
        ("seed002-module", Module, (3, 32, 32), "onnx"),
        # every format (about 20 s each): with the slow tests, which CI runs as its second step
        pytest.param("seed002-module", Module, (3, 32, 32), "all", marks=pytest.mark.slow),
        pytest.param("seed002-lenet", lenet, (1, 28, 28), "all", marks=pytest.mark.slow),
    ],
)
def test_weights_saved_by_the_seed_scripts_export_and_run(
    tmp_path: Path, arch: str, seed_class, shape, fmt: str
) -> None:
    from PIL import Image

    from cnnx.core.contract import normalise
    from cnnx.core.spec import ModelSpec
    from cnnx.runtime.image import preprocess

    torch.manual_seed(0)
    model = seed_class().eval()
    path = tmp_path / "their.pth"
    torch.save(model.state_dict(), path)  # what the seed script's torch.save(model.state_dict()) writes
    # parity images: generated CIFAR-10 for the colour network, the shipped MNIST sample for LeNet
    data = ["--data-dir", str(write_cifar10(tmp_path / "cifar", per_batch=4, test=40))] if shape[0] == 3 else []
    out = tmp_path / "exp"
    args = ("--arch", arch, "--format", fmt, "--out", str(out), "--json", *data)
    report = json.loads(run_cli("export", str(path), *args, check=True).stdout)
    made = {"parity.json", "their.onnx", *(["their.torchscript"] if fmt == "all" else [])}
    assert made <= {p.name for p in out.iterdir()} and all(f["passed"] for f in report["formats"].values())
    spec = ModelSpec.from_dict(report["spec"])
    assert (spec.arch, spec.input_shape, spec.num_classes) == (arch, shape, 10)
    img = tmp_path / "img.png"
    if shape[0] == 1:  # the digit recipe refuses a blank page ("no digit found"): a real digit
        img = REPO / "cnnx" / "samples" / "digits" / "mnist-3.png"
    else:
        Image.fromarray(np.full((shape[1], shape[2], 3), 128, np.uint8)).save(img)
    (result,) = infer_json(out / "their.onnx", img)
    # what the seed's own class says about the same pixels, prepared by the runtime's recipe from the spec
    x = normalise(preprocess(img, spec)[None], spec.mean, spec.std)  # (1, C, H, W) float32
    with torch.no_grad():
        probs = torch.softmax(model(torch.from_numpy(x)), 1)[0].numpy()  # (10,)
    assert [r["label"] for r in result["top_k"]] == [spec.classes[i] for i in np.argsort(-probs)[:3]]
    assert [r["probability"] for r in result["top_k"]] == pytest.approx(np.sort(probs)[::-1][:3].tolist(), abs=1e-5)
    assert result["label"] == spec.classes[int(probs.argmax())]
    assert result["probability"] == pytest.approx(float(probs.max()), abs=1e-5)
