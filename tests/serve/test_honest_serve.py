"""The server answers as `cnnx infer` does for a model that calibrates and refuses: /predict gives
label null and the reason for a non-digit, and v2 probabilities use the spec's temperature."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnx.core.calibration import softmax
from tests.serve.client import Server
from tests.support import REPO, run_cli, scribble_png, with_spec

pytest.importorskip("onnx")
SEVEN = REPO / "cnnx" / "samples" / "digits" / "mnist-7.png"


def test_refusal_and_calibration_over_http(shipped_model, tmp_path):
    model = with_spec(
        shipped_model, tmp_path, calibration={"temperature": 2.0}, openset={"method": "msp", "threshold": 0.9}
    )
    scribble = scribble_png(tmp_path)
    expected = [
        json.loads(line)
        for line in run_cli("infer", str(scribble), str(SEVEN), "-m", str(model), "--json").stdout.splitlines()
    ]
    assert expected[0]["label"] is None and expected[1]["label"] == "7"
    srv = Server("--model", str(model))
    try:
        said = [srv.post_image(p.read_bytes()).json["predictions"][0] for p in (scribble, SEVEN)]
        for got, want in zip(said, expected, strict=True):
            assert got["label"] == want["label"] and got.get("refused") == want.get("refused")
        x = np.zeros((1, 1, 28, 28), np.float32)
        reply = srv.post_json(
            "/v2/models/honest/infer",
            {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1, 28, 28], "data": x.ravel().tolist()}]},
        ).json
        out = {o["name"]: np.array(o["data"], np.float32).reshape(o["shape"]) for o in reply["outputs"]}
        np.testing.assert_allclose(out["probabilities"], softmax(out["logits"], 2.0), rtol=1e-5)
    finally:
        assert srv.stop() == 0
