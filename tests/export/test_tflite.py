"""The tflite format: a LiteRT flatbuffer (.tflite, fp32) made from the torch module by litert-torch, loaded
back by LiteRT's interpreter, gated on real and random inputs, its spec in the file's own metadata, run by
the edge runtime without torch, and refused when broken (exit 3, nothing left behind).

litert-torch cannot be installed beside the dev extra (see pyproject's litert extra): these tests skip
there, and ``.ci/litert`` runs them in an environment of its own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support import MINI_MNIST, REPO, cnnx_without, run_cli

torch = pytest.importorskip("torch")
pytest.importorskip("litert_torch", reason="the litert extra is not installed: .ci/litert runs these tests")


@pytest.fixture(scope="module")
def made(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """`cnnx export RUN --format tflite --json` through the real CLI: (the folder, its report)."""
    out = tmp_path_factory.mktemp("tflite") / "mnist.onnx"
    proc = run_cli("export", str(trained_run), "--format", "tflite", "--out", str(out), "--json", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    return out.parent, json.loads(proc.stdout)


def test_export_writes_a_tflite_file_through_its_gate(made: tuple[Path, dict[str, Any]]) -> None:
    folder, report = made
    assert sorted(p.name for p in folder.iterdir()) == ["mnist.tflite", "parity.json"]
    r = report["formats"]["tflite"]
    assert r["passed"] and r["method"] == "litert-torch" and r["top1_agreement"] == 1.0
    assert r["real"]["max_abs_diff"] <= 1e-4 and r["random"]["max_abs_diff"] <= 1e-4
    assert r["size_bytes"] == (folder / "mnist.tflite").stat().st_size
    assert report["images"]["random_batches"] == [1, 2, 7, 64]  # batches past the file's own, run in pieces


def test_the_file_carries_its_spec_and_runs_any_batch_like_the_onnx_file(
    made: tuple[Path, dict[str, Any]], onnx_model: Path
) -> None:
    import onnxruntime as ort

    from cnnx.core.contract import normalise
    from cnnx.core.idx import read_idx
    from cnnx.export.formats import litert_tflite

    loaded = litert_tflite.load(made[0] / "mnist.tflite", 1)
    spec = loaded.spec()
    assert spec.extra["format"] == "tflite" and spec.extra["precision"] == "fp32"
    assert spec.extra["parity"]["passed"] and spec.arch == "mnist-bn" and "litert-torch" in spec.versions
    session = ort.InferenceSession(str(onnx_model), providers=["CPUExecutionProvider"])
    x = normalise(read_idx(MINI_MNIST / "t10k-images-idx3-ubyte.gz")[:150, None], spec.mean, spec.std)
    for n in (1, 2, 37, 150):  # the file takes one image a call: the rest run in pieces
        got = loaded.run(x[:n])
        assert got.shape == (n, 10) and got.dtype == np.float32
        np.testing.assert_allclose(got, session.run(None, {"input": x[:n]})[0], rtol=0, atol=1e-4)


def test_weight_changed_in_the_file_fails_and_leaves_nothing(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnx.export.formats import litert_tflite
    from tests.support import export_with_nudged_bias

    result, left = export_with_nudged_bias(
        litert_tflite, "tflite", trained_run / "best.pt", tmp_path / "models", monkeypatch
    )
    assert result.exit_code == 3, result.output
    assert "no tflite export passed" in result.stderr and "exceeds 0.0001" in result.stderr
    assert "litert-torch:" in result.stderr
    assert left == ["keep.txt"]


def test_infer_runs_the_file_without_torch(made: tuple[Path, dict[str, Any]], onnx_model: Path) -> None:
    digit = REPO / "cnnx" / "samples" / "digits" / "mnist-3.png"
    proc = cnnx_without("torch", "infer", "--model", str(made[0] / "mnist.tflite"), str(digit), "--json")
    assert proc.returncode == 0, proc.stderr
    *lines, modules = proc.stdout.strip().splitlines()
    answer = json.loads(lines[-1])
    assert json.loads(modules) == []  # neither torch nor onnx entered the process
    reference = json.loads(run_cli("infer", "--model", str(onnx_model), str(digit), "--json", check=True).stdout)
    assert answer["label"] == reference["label"] and abs(answer["probability"] - reference["probability"]) < 1e-4
    assert proc.stderr == ""  # LiteRT's notes on stderr are held


def test_inspect_reads_the_spec_and_the_fixed_batch(made: tuple[Path, dict[str, Any]]) -> None:
    info = json.loads(run_cli("inspect", str(made[0] / "mnist.tflite"), "--json", check=True).stdout)
    assert info["kind"] == "tflite" and info["spec"]["arch"] == "mnist-bn" and info["parity"]["passed"]
    assert info["inputs"][0]["shape"] == [1, 1, 28, 28] and info["outputs"][0]["shape"] == [1, 10]
    assert info["selfcheck"]["images"] == 8 and info["selfcheck"]["format"] == "tflite"


def test_verify_runs_the_self_check_the_file_carries_without_torch(made: tuple[Path, dict[str, Any]]) -> None:
    proc = cnnx_without("torch", "verify", str(made[0] / "mnist.tflite"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("pass: ") and "(tflite)" in proc.stdout and "ai-edge-litert" in proc.stdout


def test_a_cut_short_file_is_refused_in_one_line(made: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    cut = tmp_path / "cut.tflite"
    cut.write_bytes((made[0] / "mnist.tflite").read_bytes()[:5000])
    digit = REPO / "cnnx" / "samples" / "digits" / "mnist-3.png"
    proc = run_cli("infer", "--model", str(cut), str(digit))
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"error: {cut} is not a readable TFLite flatbuffer (cut short or corrupt")


def test_serve_holds_a_tflite_file_beside_the_onnx_one(
    made: tuple[Path, dict[str, Any]], onnx_model: Path, tmp_path: Path
) -> None:
    import shutil

    from tests.serve.client import Server
    from tests.serve.conftest import DIGITS

    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(onnx_model, folder / "mnist.onnx")
    shutil.copy(made[0] / "mnist.tflite", folder / "mnist.tflite")
    seven = (DIGITS / "mnist-7.png").read_bytes()
    srv = Server("--model", str(folder))
    try:
        index = srv.request("POST", "/v2/repository/index").json
        assert sorted(m["name"] for m in index) == ["mnist", "mnist.tflite"]
        onnx = srv.post_image(seven, "/predict?model=mnist").json["predictions"][0]
        reply = srv.post_image(seven, "/predict?model=mnist.tflite")
        assert reply.status == 200 and reply.json["model"] == "mnist.tflite"
        got = reply.json["predictions"][0]
        assert got["label"] == onnx["label"] and got["probability"] == pytest.approx(onnx["probability"], abs=1e-4)
        meta = srv.get("/v2/models/mnist.tflite").json
        assert meta["platform"] == "tflite" and meta["inputs"][0]["shape"] == [-1, 1, 28, 28]
    finally:
        assert srv.stop() == 0
