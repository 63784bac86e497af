"""`cnnx serve` on every file the runtime opens: .onnx, .ort and OpenVINO .xml, alone or in one folder,
with names that stay apart (mnist, mnist.ort, mnist.xml), reloads by name, and the folder's bounds kept."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.serve.client import Server
from tests.serve.conftest import DIGITS
from tests.support import run_cli

pytest.importorskip("torch")  # the `exported` fixture trains and exports a model
SEVEN = (DIGITS / "mnist-7.png").read_bytes()


def _copy(exported: Path, folder: Path, *names: str) -> Path:
    folder.mkdir(exist_ok=True)
    for name in names:
        shutil.copy(exported / name, folder / name)
    return folder


def test_a_folder_serves_onnx_and_ort_files_under_names_that_stay_apart(exported: Path, tmp_path: Path) -> None:
    # what `cnnx export --format all` leaves in a folder, less OpenVINO: files no runtime opens are not models
    names = ("mnist.onnx", "mnist.fp16.onnx", "mnist.ort", "mnist.required_operators.config", "mnist.torchscript")
    folder = _copy(exported, tmp_path / "models", *names, "parity.json")
    srv = Server("--model", str(folder))
    try:
        index = srv.request("POST", "/v2/repository/index").json
        assert sorted(m["name"] for m in index) == ["mnist", "mnist.fp16", "mnist.ort"]
        answers = {name: srv.post_image(SEVEN, f"/predict?model={name}&top_k=3") for name in ("mnist", "mnist.ort")}
        assert {r.status for r in answers.values()} == {200}
        onnx, ort = (answers[n].json["predictions"][0] for n in ("mnist", "mnist.ort"))
        assert answers["mnist.ort"].json["model"] == "mnist.ort" and ort["label"] == onnx["label"]
        assert ort["probability"] == pytest.approx(onnx["probability"], abs=1e-4)
        meta = srv.get("/v2/models/mnist.ort").json
        assert meta["platform"] == "onnxruntime_onnx" and meta["inputs"][0]["shape"] == [-1, 1, 28, 28]

        assert srv.request("POST", "/v2/repository/models/mnist.ort/load").json["version"] == 2
        shutil.copy(folder / "mnist.ort", folder / "late.ort")  # a new .ort file: loaded by its name
        assert srv.request("POST", "/v2/repository/models/late.ort/load").status == 200
        assert srv.post_image(SEVEN, "/predict?model=late.ort").json["predictions"][0]["label"] == onnx["label"]
        assert srv.request("POST", "/v2/repository/models/late/load").status == 404  # no late.onnx

        outside = tmp_path / "elsewhere.ort"
        shutil.copy(folder / "mnist.ort", outside)
        (folder / "escape.ort").symlink_to(outside)
        reply = srv.request("POST", "/v2/repository/models/escape.ort/load")
        assert reply.status == 403 and "outside the model folder" in reply.json["error"]
        assert srv.request("POST", "/v2/repository/models/mnist.torchscript/load").status == 404
    finally:
        assert srv.stop() == 0


def test_an_openvino_file_is_served_alone_and_in_a_folder(exported: Path, tmp_path: Path) -> None:
    pytest.importorskip("openvino", reason="the openvino extra is not installed: pip install 'cnnx[openvino]'")
    folder = _copy(exported, tmp_path / "models", "mnist.onnx", "mnist.xml", "mnist.bin")
    srv = Server("--model", str(folder))
    try:
        assert sorted(m["name"] for m in srv.request("POST", "/v2/repository/index").json) == ["mnist", "mnist.xml"]
        onnx = srv.post_image(SEVEN, "/predict?model=mnist").json["predictions"][0]
        reply = srv.post_image(SEVEN, "/predict?model=mnist.xml")
        assert reply.status == 200 and reply.json["model"] == "mnist.xml"
        got = reply.json["predictions"][0]
        assert got["label"] == onnx["label"] and got["probability"] == pytest.approx(onnx["probability"], abs=1e-4)
        meta = srv.get("/v2/models/mnist.xml").json
        assert meta["platform"] == "openvino" and meta["inputs"][0]["name"] == "input"
        assert srv.request("POST", "/v2/repository/models/mnist.xml/load").json["version"] == 2
    finally:
        assert srv.stop() == 0
    alone = Server("--model", str(folder / "mnist.xml"))
    try:
        assert [m["name"] for m in alone.request("POST", "/v2/repository/index").json] == ["mnist.xml"]
        assert alone.post_image(SEVEN).json["predictions"][0]["label"] == onnx["label"]
    finally:
        assert alone.stop() == 0


def test_two_files_that_would_share_a_name_are_refused_in_one_line(exported: Path, tmp_path: Path) -> None:
    folder = _copy(exported, tmp_path / "models", "mnist.ort")
    shutil.copy(exported / "mnist.onnx", folder / "mnist.ort.onnx")  # also served as "mnist.ort"
    proc = run_cli("serve", "--port", "0", "--model", str(folder))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1
    assert "holds mnist.ort and mnist.ort.onnx, both served as 'mnist.ort'" in proc.stderr
