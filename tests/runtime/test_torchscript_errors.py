"""A TorchScript export given to `cnnx infer` or `cnnx verify`: named as what it is, with a way out that works
(`cnnx export` refuses a TorchScript file, so the message must not send the user there with it)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support import REPO, run_cli

pytest.importorskip("torch")

DIGIT = REPO / "cnnx" / "samples" / "digits" / "mnist-7.png"
RUNS = "cnnx infer, verify and serve run ONNX (.onnx, .ort), OpenVINO (.xml) and LiteRT (.tflite) files"


@pytest.fixture(scope="module")
def torchscript(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 2-epoch run exported by the real CLI as model.torchscript, alone in its folder."""
    out = tmp_path_factory.mktemp("torchscript") / "model.torchscript"
    run_cli("export", str(trained_run), "--format", "torchscript", "--out", str(out), "--threads", "1", check=True)
    return out


def test_infer_and_verify_name_a_torchscript_export_and_point_to_onnx(torchscript: Path) -> None:
    for args in (["infer", str(DIGIT), "--model", str(torchscript)], ["verify", str(torchscript)]):
        proc = run_cli(*args)
        assert proc.returncode == 2 and proc.stdout == "", proc.stderr
        assert proc.stderr.strip().splitlines() == [
            f"error: {torchscript} is a TorchScript export; {RUNS} (export the checkpoint it was made from "
            "to ONNX, e.g. cnnx export RUN/best.pt --format onnx)"
        ]
    # the way out is real: `cnnx export` takes the checkpoint, not the TorchScript file
    refused = run_cli("export", str(torchscript))
    assert refused.returncode == 2 and "is already an export" in refused.stderr


def test_an_onnx_file_beside_it_is_the_way_out(torchscript: Path, tmp_path: Path, shipped_model: Path) -> None:
    model = tmp_path / "model.torchscript"
    shutil.copy(torchscript, model)
    shutil.copy(shipped_model, tmp_path / "model.onnx")
    proc = run_cli("infer", str(DIGIT), "--model", str(model))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (
        f"error: {model} is a TorchScript export; {RUNS} (give {tmp_path / 'model.onnx'}, exported beside it)"
    )
    assert run_cli("infer", str(DIGIT), "--model", str(tmp_path / "model.onnx")).returncode == 0
