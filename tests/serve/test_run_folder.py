"""`cnnx serve --model RUN` on a training run folder: it serves the ONNX file `cnnx export RUN` wrote into
it, as `cnnx infer --model RUN` runs it, and not every model file the folder also holds."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.serve.client import Server
from tests.serve.conftest import DIGITS

pytest.importorskip("torch")  # the fixtures train a run and export it


def test_a_run_folder_serves_its_best_onnx(trained_run: Path, exported: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for name in ("best.pt", "last.pt"):
        shutil.copy(trained_run / name, run / name)
    shutil.copy(exported / "mnist.onnx", run / "best.onnx")
    shutil.copy(exported / "mnist.fp16.onnx", run / "best.fp16.onnx")  # served as a folder, it would be a model too
    srv = Server("--model", str(run))
    try:
        # the start line names it: /v2/models/best, not after the dataset the run trained on
        assert f"listening on {srv.url} (model best; " in "".join(srv.lines)
        index = srv.request("POST", "/v2/repository/index").json
        assert [m["name"] for m in index] == ["best"]
        reply = srv.post_image((DIGITS / "mnist-7.png").read_bytes())
        assert reply.status == 200 and reply.json["model"] == "best"
    finally:
        assert srv.stop() == 0, "".join(srv.lines)
