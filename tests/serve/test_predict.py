"""The real server answers as `cnnx infer` does: /predict on raw and multipart bodies, concurrent
clients, the v2 protocol's metadata and tensors, and the exact input the model saw."""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from cnnx.core.calibration import softmax
from cnnx.core.contract import normalise
from cnnx.runtime import Classifier
from tests.serve.client import Load, Server
from tests.serve.conftest import DIGITS
from tests.support import infer_json, run_cli


def _as_served(rows: list[dict]) -> list[dict]:
    """`cnnx infer --json` rows with each path cut to its file name, as an upload names it."""
    return [{**row, "path": Path(row["path"]).name} for row in rows]


def test_answers_equal_cnnx_infer_for_the_same_files(server, shipped_model, sample_files):
    expected = _as_served(infer_json(shipped_model, *sample_files))  # top-3, as below
    reply = server.post_files([(p.name, p.read_bytes()) for p in sample_files], "/predict?top_k=3")
    assert reply.status == 200, reply.body
    assert reply.json["model"] == "mnist" and reply.json["predictions"] == expected
    for path, row in zip(sample_files, expected, strict=True):  # one image per request, as a raw body
        kind = "image/jpeg" if path.suffix == ".jpg" else "image/png"
        one = server.post_image(path.read_bytes(), "/predict?top_k=3", kind)
        assert one.status == 200 and one.json["predictions"] == [{**row, "path": "body"}]
    labels = {Path(r["path"]).stem: r["label"] for r in expected}
    # the shipped digits are named by label: answered right, or (a sloppy one) refused
    assert all(labels[stem] in (stem[-1], None) for stem in labels), labels


def test_16_concurrent_clients_get_the_serial_answers(server, digit_pngs, sample_files):
    files = [(p.name, p.read_bytes()) for p in [*sorted(digit_pngs.iterdir())[:40], *sample_files]]
    serial = [server.post_files([f], "/predict?top_k=2").json["predictions"][0] for f in files]

    def send(k: int, i: int) -> dict:
        j = (i * 7 + k) % len(files)  # each client walks the files in its own order
        if i % 5 == 4:  # now and then three files in one request
            three = [files[j], files[(j + 1) % len(files)], files[(j + 2) % len(files)]]
            reply = server.post_files(three, "/predict?top_k=2")
            return {"at": j, "status": reply.status, "predictions": reply.json["predictions"]}
        reply = server.post_files([files[j]], "/predict?top_k=2")
        return {"at": j, "status": reply.status, "predictions": reply.json["predictions"]}

    replies = Load(threads=16, count=len(files)).run(send)
    assert len(replies) == 16
    for answers in replies.values():
        for a in answers:
            assert not isinstance(a, Exception), a
            assert a["status"] == 200
            n = len(a["predictions"])
            assert a["predictions"] == [serial[(a["at"] + m) % len(files)] for m in range(n)]


def test_a_request_of_256_images(server, digit_pngs):
    paths = sorted(digit_pngs.iterdir())[:256]
    reply = server.post_files([(p.name, p.read_bytes()) for p in paths])
    assert reply.status == 200
    preds = reply.json["predictions"]
    assert [p["path"] for p in preds] == [p.name for p in paths]
    right = sum(p["label"] == path.stem.split("_")[1] for p, path in zip(preds, paths, strict=True))
    assert right >= 250, right  # the shipped model is 99.5% accurate on MNIST


def test_a_request_too_large_to_decode_on_the_event_loop_answers_as_cnnx_infer(
    server, shipped_model, sample_files, tmp_path
):
    """Over INLINE_BYTES of uploads in a batch are decoded in the model's thread, not on the loop: same answers
    (so are over INLINE_IMAGES images: test_a_request_of_256_images)."""
    from cnnx.serve.batcher import INLINE_BYTES

    rng = np.random.default_rng(0)
    seven = np.asarray(Image.open(DIGITS / "mnist-7.png").resize((700, 700), Image.BILINEAR), np.float32)
    page = np.clip(235 - 0.8 * seven + rng.normal(0, 8, seven.shape), 0, 255).astype(np.uint8)  # noisy: a big PNG
    big = tmp_path / "noisy-page.png"
    Image.fromarray(page).save(big)
    files = [big, *sample_files]
    assert sum(p.stat().st_size for p in files) > INLINE_BYTES
    expected = _as_served(infer_json(shipped_model, *files))
    reply = server.post_files([(p.name, p.read_bytes()) for p in files], "/predict?top_k=3")
    assert reply.status == 200 and reply.json["predictions"] == expected
    assert server.request("GET", "/v2/health/live").status == 200  # and the server goes on


def test_the_input_the_model_saw_comes_back_as_a_png(server, shipped_model, sample_files):
    clf = Classifier(shipped_model, threads=1)
    photo = next(p for p in sample_files if p.suffix == ".jpg")
    reply = server.post_image(photo.read_bytes(), "/predict?preprocessed=1", "image/jpeg")
    url = reply.json["predictions"][0]["preprocessed"]
    assert url.startswith("data:image/png;base64,")
    seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
    assert np.array_equal(seen, clf.pixels(photo)[0])  # (28, 28): exactly what the model was given
    assert "preprocessed" not in server.post_image(photo.read_bytes(), "/predict", "image/jpeg").json["predictions"][0]


def test_the_v2_protocol_health_metadata_and_tensors(server, shipped_model, sample_files):
    assert server.get("/v2/health/live").json == {"live": True}
    assert server.get("/v2/health/ready").status == 200
    assert server.get("/v2").json["name"] == "cnnx"
    meta = server.get("/v2/models/mnist").json
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 28, 28]}]
    assert [o["name"] for o in meta["outputs"]] == ["logits", "probabilities"]
    assert meta["parameters"]["classes"] == [str(i) for i in range(10)]
    assert server.get("/v2/models/mnist/ready").json == {"name": "mnist", "ready": True}

    clf = Classifier(shipped_model, threads=1)
    pixels = np.stack([clf.pixels(p) for p in sample_files[:5]])  # (5, 1, 28, 28) uint8
    x = normalise(pixels, clf.spec.mean, clf.spec.std)
    request = {
        "id": "r-1",
        "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}],
    }
    reply = server.post_json("/v2/models/mnist/infer", request)
    assert reply.status == 200, reply.body
    out = {o["name"]: o for o in reply.json["outputs"]}
    assert reply.json["id"] == "r-1" and reply.json["model_name"] == "mnist"
    logits = np.array(out["logits"]["data"], np.float32).reshape(out["logits"]["shape"])
    np.testing.assert_array_equal(logits, clf.model.run(x))
    probs = softmax(logits, clf.temperature)  # calibrated, as /predict's
    np.testing.assert_allclose(np.array(out["probabilities"]["data"]).reshape(5, 10), probs, rtol=1e-6)
    only = server.post_json("/v2/models/mnist/infer", {**request, "outputs": [{"name": "probabilities"}]})
    assert [o["name"] for o in only.json["outputs"]] == ["probabilities"]
    nested = {"inputs": [{**request["inputs"][0], "data": x.tolist()}]}  # the protocol allows nested lists too
    again = {o["name"]: o for o in server.post_json("/v2/models/mnist/infer", nested).json["outputs"]}
    assert again["logits"]["data"] == out["logits"]["data"]


def test_a_folder_of_models_is_served_by_name(shipped_model, tmp_path, sample_files):
    for name in ("digits", "spare"):
        shutil.copy(shipped_model, tmp_path / f"{name}.onnx")
    (tmp_path / "notes.txt").write_text("not a model\n")
    srv = Server("--model", str(tmp_path))
    try:
        index = srv.request("POST", "/v2/repository/index").json
        assert [m["name"] for m in index] == ["digits", "spare"]
        seven = (sample_files[0].parent / "mnist-7.png").read_bytes()
        assert srv.post_image(seven, "/predict?model=spare").json["model"] == "spare"
        assert srv.post_image(seven).json["model"] == "digits"  # the first by name is the default
        assert srv.get("/v2/models/notes").status == 404
    finally:
        assert srv.stop() == 0


def test_preprocess_plain_answers_as_cnnx_infer_preprocess_plain(shipped_model, sample_files):
    proc = run_cli(
        "infer", *map(str, sample_files), "-m", str(shipped_model), "--json", "-k", "2", "--preprocess", "plain"
    )
    expected = _as_served([json.loads(line) for line in proc.stdout.splitlines()])
    srv = Server("--model", str(shipped_model), "--preprocess", "plain")
    try:
        reply = srv.post_files([(p.name, p.read_bytes()) for p in sample_files], "/predict?top_k=2")
        assert reply.json["predictions"] == expected
        default = _as_served(infer_json(shipped_model, *sample_files))
        assert [r["top_k"] for r in expected] != [r["top_k"][:2] for r in default]  # the recipe made a difference
    finally:
        assert srv.stop() == 0
