"""The server's life: metrics, reloads (route and SIGHUP; a bad file keeps the old model; none fails
a request under load), the bounded queue, graceful shutdown on SIGTERM, the command's own errors."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from cnnx.runtime import Classifier
from cnnx.runtime.image import EncodedImage
from cnnx.serve.batcher import Batcher, Job
from cnnx.serve.errors import RequestError
from tests.serve.client import Load, Server, multipart
from tests.serve.conftest import DIGITS
from tests.support import run_cli

SEVEN = (DIGITS / "mnist-7.png").read_bytes()


@pytest.fixture
def model_dir(shipped_model: Path, tmp_path: Path) -> Path:
    shutil.copy(shipped_model, tmp_path / "mnist.onnx")
    return tmp_path


def _metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text ``text``."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            key, _, value = line.rpartition(" ")
            got = key[len(name) :].strip("{}")
            if ",".join(sorted(got.split(","))) == want or (not labels and not got):
                return float(value)
    raise AssertionError(f"no {name}{{{want}}} in /metrics")


def _logged(srv: Server, words: str, within: float = 10) -> bool:
    """Whether the server's output holds ``words`` within ``within`` seconds (its lines are read by a thread)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if words in "".join(srv.lines):
            return True
        time.sleep(0.05)
    return False


def test_metrics_count_requests_batches_and_the_model(server):
    body, kind = multipart([(f"{i}.png", SEVEN) for i in range(5)])
    assert server.request("POST", "/predict", body, {"Content-Type": kind}).status == 200
    assert server.get("/nowhere").status == 404
    text = server.get("/metrics").body.decode()
    assert _metric(text, "cnnx_requests_total", route="/predict", method="POST", status="200") >= 1
    assert _metric(text, "cnnx_requests_total", route="unmatched", method="GET", status="404") >= 1
    assert _metric(text, "cnnx_request_seconds_count", route="/predict") >= 1
    assert _metric(text, "cnnx_batch_images_bucket", model="mnist", le="4.0") < _metric(
        text, "cnnx_batch_images_bucket", model="mnist", le="8.0"
    )  # the 5-image request ran as one batch
    assert _metric(text, "cnnx_queue_depth", model="mnist") == 0
    assert 0 < _metric(text, "cnnx_model_load_seconds", model="mnist") < 60
    assert _metric(text, "cnnx_model_version", model="mnist") >= 1


def test_reload_swaps_the_model_and_a_bad_file_keeps_the_old_one(model_dir):
    srv = Server("--model", str(model_dir))
    try:
        good = (model_dir / "mnist.onnx").read_bytes()
        reply = srv.request("POST", "/v2/repository/models/mnist/load")
        assert reply.status == 200 and reply.json["version"] == 2
        assert srv.post_image(SEVEN).json["version"] == 2
        assert _logged(srv, "cnnx serve: reloaded mnist (version 2)")  # a reload through the route is logged too

        (model_dir / "mnist.onnx").write_bytes(good[: len(good) // 2])  # a copy cut short
        reply = srv.request("POST", "/v2/repository/models/mnist/load")
        assert reply.status == 422 and "still serving version 2" in reply.json["error"]
        assert _logged(srv, "cnnx serve: model 'mnist' did not reload: ")
        after = srv.post_image(SEVEN)
        assert after.status == 200 and after.json["version"] == 2 and after.json["predictions"][0]["label"] == "7"

        (model_dir / "mnist.onnx").write_bytes(good)
        srv.proc.send_signal(signal.SIGHUP)  # what `systemctl reload` sends
        deadline = time.monotonic() + 60
        while srv.post_image(SEVEN).json["version"] != 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert srv.post_image(SEVEN).json["version"] == 3

        shutil.copy(model_dir / "mnist.onnx", model_dir / "late.onnx")  # a new file in the folder: loaded by name
        assert srv.request("POST", "/v2/repository/models/late/load").status == 200
        assert srv.post_image(SEVEN, "/predict?model=late").json["model"] == "late"
        assert srv.request("POST", "/v2/repository/models/nosuch/load").status == 404  # no model: no reload failed
        text = srv.get("/metrics").body.decode()
        assert _metric(text, "cnnx_model_reloads_total", model="mnist", result="failed") == 1
        assert 'cnnx_model_reloads_total{model="other"' not in text
        assert _metric(text, "cnnx_model_reloads_total", model="mnist", result="ok") == 2
    finally:
        assert srv.stop() == 0


def test_a_link_out_of_the_model_folder_is_not_loaded(model_dir, tmp_path_factory):
    outside = tmp_path_factory.mktemp("elsewhere") / "secret.onnx"
    shutil.copy(model_dir / "mnist.onnx", outside)
    srv = Server("--model", str(model_dir))
    try:
        (model_dir / "escape.onnx").symlink_to(outside)
        reply = srv.request("POST", "/v2/repository/models/escape/load")
        assert reply.status == 403 and "outside the model folder" in reply.json["error"]
        assert srv.get("/v2/models/escape").status == 404
    finally:
        assert srv.stop() == 0


def test_no_request_fails_while_the_model_is_reloaded_under_load(model_dir):
    srv = Server("--model", str(model_dir))
    try:
        reloads: list[int] = []
        done = threading.Event()

        def reload_loop() -> None:
            while not done.is_set() and len(reloads) < 20:
                reloads.append(srv.request("POST", "/v2/repository/models/mnist/load").status)

        reloader = threading.Thread(target=reload_loop)
        reloader.start()
        replies = Load(threads=8, count=40).run(lambda k, i: srv.post_image(SEVEN))
        done.set()
        reloader.join()
        answers = [r for rs in replies.values() for r in rs]
        assert len(answers) == 320
        failed = [
            r if isinstance(r, Exception) else (r.status, r.body[:200])
            for r in answers
            if isinstance(r, Exception) or r.status != 200
        ]
        assert failed == []
        assert all(r.json["predictions"][0]["label"] == "7" for r in answers)
        assert reloads and set(reloads) == {200}
        assert len({r.json["version"] for r in answers}) > 1  # the answers came from more than one load
    finally:
        assert srv.stop() == 0


def test_a_full_queue_answers_503_with_retry_after(shipped_model):
    """Three jobs submitted in one go, before the batcher's task has had a turn: the third is refused."""

    async def scenario() -> tuple[RequestError, int, list]:
        batcher = Batcher(Classifier(shipped_model, threads=1), max_batch=8, max_delay=0.0, max_queue=2)
        first = batcher.submit(Job(uploads=[EncodedImage("seven.png", SEVEN)]))
        batcher.submit(Job(uploads=[EncodedImage("seven.png", SEVEN)]))
        with pytest.raises(RequestError) as refused:
            batcher.submit(Job(uploads=[EncodedImage("seven.png", SEVEN)]))
        version, predictions = await asyncio.wait_for(first, 60)  # the queued jobs run, and are answered
        await batcher.close(30)
        return refused.value, version, predictions

    refused, version, predictions = asyncio.run(scenario())
    assert refused.status == 503 and refused.headers == {"Retry-After": "1"}
    assert version == 1 and predictions[0].label == "7"


def test_over_http_a_busy_server_answers_200_or_503_and_never_fails(shipped_model):
    srv = Server("--model", str(shipped_model), "--max-queue", "1", "--max-batch", "8")
    try:
        body, kind = multipart([(f"{i}.png", SEVEN) for i in range(64)])  # each a batch of its own
        replies = Load(threads=12, count=4).run(
            lambda k, i: srv.request("POST", "/predict", body, {"Content-Type": kind})
        )
        answers = [r for rs in replies.values() for r in rs]
        assert not [r for r in answers if isinstance(r, Exception)]
        assert {r.status for r in answers} <= {200, 503}
        busy = [r for r in answers if r.status == 503]
        assert all(r.headers.get("retry-after") == "1" and "busy" in r.json["error"] for r in busy)
        assert any(r.status == 200 for r in answers)
    finally:
        assert srv.stop() == 0


def test_sigterm_lets_the_request_in_flight_finish(shipped_model):
    srv = Server("--model", str(shipped_model))
    body, kind = multipart([(f"{i}.png", SEVEN) for i in range(16)])
    head = f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n\r\n"
    with srv.raw() as sock:
        sock.sendall(head.encode() + body[:100])  # the request is in flight: its body half sent
        time.sleep(0.2)
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.refuses_connections(), "the server still accepts new connections after SIGTERM"
        sock.sendall(body[100:])
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200"), reply[:300]
    assert reply.count(b'"index":7') == 16  # every image answered
    assert srv.proc.wait(60) == 0


def test_a_shutdown_timeout_of_0_ends_a_stalled_request_at_once_with_a_json_503(shipped_model):
    """--shutdown-timeout 0 waited without end (uvicorn took int(0) or None as no limit); the request it
    cancels got uvicorn's plain-text 500 and left a traceback in the log."""
    srv = Server("--model", str(shipped_model), "--shutdown-timeout", "0", "--request-timeout", "120")
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 5000\r\n\r\n"
    with srv.raw() as sock:
        sock.sendall(head + SEVEN[:100])  # the body stops: only --request-timeout (120 s) would end it
        time.sleep(0.2)
        start = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
        assert srv.proc.wait(60) == 0
    assert time.monotonic() - start < 30, "the server waited for the stalled request"
    head_, _, body = reply.partition(b"\r\n\r\n")
    assert head_.startswith(b"HTTP/1.1 503") and b"connection: close" in head_.lower(), reply[:300]
    assert "shut down before this request finished" in json.loads(body)["error"]
    assert "Traceback" not in "".join(srv.lines)


def test_the_access_log_has_one_line_per_request_and_is_off_by_default(shipped_model, server):
    """--access-log wrote nothing: uvicorn logs a request at INFO, under the server's log level."""
    srv = Server("--model", str(shipped_model), "--access-log")
    try:
        assert srv.post_image(SEVEN).status == 200
        assert srv.get("/nowhere").status == 404
        assert _logged(srv, '"GET /nowhere HTTP/1.1" 404')
        assert sum('"POST /predict HTTP/1.1" 200' in line for line in srv.lines) == 1
    finally:
        assert srv.stop() == 0
    assert server.post_image(SEVEN).status == 200  # the module's server runs without --access-log
    time.sleep(0.2)
    assert not any("/predict HTTP/1.1" in line for line in server.lines)


def test_the_command_reports_bad_options_and_models_in_one_line(tmp_path):
    for args, words in [
        (["--max-batch", "0"], "--max-batch 0 is out of range"),
        (["--model", str(tmp_path / "missing.onnx")], "no model file at"),
        (["--model", str(tmp_path)], "holds no model files (.onnx, .ort, .xml, .tflite)"),
    ]:
        proc = run_cli("serve", "--port", "0", *args)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("error: ") and words in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    proc = run_cli("serve", "--port", "0", "--model", str(tmp_path / "bad.onnx"))
    assert proc.returncode == 2 and "is not a usable ONNX model" in proc.stderr


def test_the_settings_default_to_the_commands_defaults():
    """ServeConfig is what the command maps its options onto: built without them, it serves the same way
    (its top_k was 5 where the command and docs/serve.md say 1)."""
    from cnnx.cli.serve import serve
    from cnnx.serve.config import ServeConfig

    given = serve.make_context("serve", []).params  # every option as the command gets it when none is given
    assert given.pop("preprocess") == "auto" and ServeConfig().preprocess is None  # the command maps auto to None
    assert ServeConfig(preprocess=None, **given) == ServeConfig()


def test_a_host_other_than_loopback_is_warned_about():
    """Every interface, with no authentication: the start says so; loopback addresses say nothing."""
    from cnnx.cli.serve import _exposed

    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        assert _exposed(host, "http://127.0.0.1:8000") is None, host
    for host in ("0.0.0.0", "::", "192.168.1.20", "example.org"):
        warning = _exposed(host, "http://0.0.0.0:8000")
        assert warning is not None and f"--host {host} is not loopback" in warning and "port 8000" in warning


def test_a_port_in_use_is_named(server):
    proc = run_cli("serve", "--port", str(server.port))
    assert proc.returncode == 2 and f"cannot listen on 127.0.0.1:{server.port}" in proc.stderr


def test_without_the_serve_extra_the_command_says_what_to_install():
    import subprocess
    import sys

    hide = "import sys; sys.modules['starlette'] = None; from cnnx.cli import main; main(['serve'])"
    proc = subprocess.run([sys.executable, "-c", hide], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and 'pip install "cnnx[serve]"' in proc.stderr and "starlette" in proc.stderr


def test_each_model_runs_on_the_cores_shared_among_the_workers_unless_threads_says(shipped_model: Path) -> None:
    """A lone server gives its model every physical core (a request of many images runs on them all);
    N workers share them, at least one thread each; --threads N is taken as given."""
    from cnnx.core.machine import physical_cores
    from cnnx.serve.config import ServeConfig
    from cnnx.serve.models import Repository

    cores = physical_cores()
    assert ServeConfig().model_threads == cores
    assert ServeConfig(workers=2).model_threads == max(1, cores // 2)
    assert ServeConfig(workers=64).model_threads == 1
    assert ServeConfig(threads=3, workers=2).model_threads == 3
    repo = Repository(ServeConfig(model=str(shipped_model)), lambda name, n: None)
    assert repo.get(None).batcher.current[0].model.threads == cores
    repo = Repository(ServeConfig(model=str(shipped_model), threads=1), lambda name, n: None)
    assert repo.get(None).batcher.current[0].model.threads == 1
