"""`cnnx.runtime.backends.open_model`: the loader chosen by suffix, each runtime torch-free, and a clear
error naming the extra to install when an optional runtime is missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import MINI_MNIST, REPO, cnnx_without


def test_an_xml_model_without_openvino_names_the_extra(tmp_path: Path) -> None:
    model = tmp_path / "model.xml"
    model.write_text("<net/>")
    (tmp_path / "model.bin").write_bytes(b"")
    digit = REPO / "cnnx" / "samples" / "digits" / "mnist-3.png"
    for args in (["infer", "--model", str(model), str(digit)], ["verify", str(model)], ["inspect", str(model)]):
        proc = cnnx_without("openvino", *args)
        assert proc.returncode == 2, proc.stderr
        (line,) = proc.stderr.splitlines()
        want = f"error: {model} is an OpenVINO model and openvino is not installed"
        assert line == want + ' (pip install "cnnx[openvino]")'


def test_a_tflite_model_without_litert_names_the_extra(tmp_path: Path) -> None:
    model = tmp_path / "model.tflite"
    model.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))  # a flatbuffer's header: read no further
    digit = REPO / "cnnx" / "samples" / "digits" / "mnist-3.png"
    for args in (["infer", "--model", str(model), str(digit)], ["eval", str(model), "--data", str(MINI_MNIST)]):
        proc = cnnx_without("ai_edge_litert", *args)
        assert proc.returncode == 2, proc.stderr
        (line,) = proc.stderr.splitlines()
        want = f"error: {model} is a LiteRT (.tflite) model and ai-edge-litert is not installed"
        assert line == want + ' (pip install "cnnx[litert-runtime]")'


def test_onnx_files_still_open_through_onnxruntime(onnx_model: Path) -> None:
    from cnnx.runtime.backends import open_model
    from cnnx.runtime.session import OnnxModel

    model = open_model(onnx_model, threads=1)
    assert isinstance(model, OnnxModel) and model.threads == 1 and model.input_name == "input"


def test_infer_on_an_openvino_file_is_torch_free(exported: Path) -> None:
    pytest.importorskip("openvino", reason="the openvino extra is not installed: pip install 'cnnx[openvino]'")
    digit = REPO / "cnnx" / "samples" / "digits" / "mnist-3.png"
    proc = cnnx_without("torch", "infer", "--model", str(exported / "mnist.xml"), str(digit), "--json")
    assert proc.returncode == 0, proc.stderr
    *lines, modules = proc.stdout.strip().splitlines()
    assert json.loads(modules) == [] and json.loads(lines[0])["label"] == "3"
