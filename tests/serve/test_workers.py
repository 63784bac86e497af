"""``cnnx serve --workers N``: several processes on one port answer as one server does; /metrics adds
them up; a reload (route or SIGHUP) reaches every worker; a worker that dies comes back; SIGTERM
stops them all with exit code 0; a model that does not load is the one-line error."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.serve.client import Server
from tests.serve.conftest import DIGITS
from tests.serve.test_lifecycle import _metric
from tests.support import run_cli

SEVEN = (DIGITS / "mnist-7.png").read_bytes()


def _children(pid: int) -> set[int]:
    """The live worker processes whose parent is ``pid`` (Linux /proc; spawned, so not the resource tracker)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z" and b"spawn_main" in cmdline:
                found.add(int(entry))
    return found


def _versions_become(srv: Server, version: int, answers: int = 12, within: float = 60) -> None:
    """Until ``answers`` /predict answers in a row come from ``version`` (each worker reloads on its own)."""
    deadline = time.monotonic() + within
    row = 0
    while row < answers:
        reply = srv.post_image(SEVEN)
        assert reply.status == 200, reply.body
        row = row + 1 if reply.json["version"] == version else 0
        assert time.monotonic() < deadline, f"not every worker serves version {version}:\n" + "".join(srv.lines)


@pytest.fixture
def model_dir(shipped_model: Path, tmp_path: Path) -> Path:
    shutil.copy(shipped_model, tmp_path / "mnist.onnx")
    return tmp_path


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process tree from /proc")
def test_workers_answer_reload_restart_and_stop_as_one_server(model_dir, sample_files):
    srv = Server("--model", str(model_dir), "--workers", "2")
    try:
        workers = _children(srv.pid)
        assert len(workers) == 2, workers

        # answers: what one server gives, whichever worker answers
        single = Server("--model", str(model_dir))
        try:
            for path in sample_files:
                a, b = srv.post_image(path.read_bytes()), single.post_image(path.read_bytes())
                assert (a.status, a.json["predictions"]) == (b.status, b.json["predictions"]), path.name
        finally:
            assert single.stop() == 0
        for _ in range(20):
            assert srv.post_image(SEVEN).status == 200

        # /metrics counts every worker's requests
        text = srv.get("/metrics").body.decode()
        assert _metric(text, "cnnx_requests_total", route="/predict", method="POST", status="200") >= 20 + len(
            sample_files
        )
        assert _metric(text, "cnnx_model_version", model="mnist") == 1

        # a reload through the route reaches the other worker too; SIGHUP reaches both
        assert srv.request("POST", "/v2/repository/models/mnist/load").json["version"] == 2
        _versions_become(srv, 2)
        srv.proc.send_signal(signal.SIGHUP)
        _versions_become(srv, 3)

        # a worker that dies is started again, and the server answers meanwhile
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while victim in _children(srv.pid) or len(_children(srv.pid)) < len(workers):
            assert time.monotonic() < deadline, "the dead worker was not started again:\n" + "".join(srv.lines)
            time.sleep(0.2)
        for _ in range(10):
            assert srv.post_image(SEVEN).status == 200
        assert "starting it again" in "".join(srv.lines)
    finally:
        survivors = _children(srv.pid)
        assert srv.stop() == 0, "".join(srv.lines)
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() and _state(pid) != "Z" for pid in survivors):
        assert time.monotonic() < deadline, "workers outlived the server"
        time.sleep(0.2)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_workers_report_a_model_that_does_not_load_in_one_line(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    proc = run_cli("serve", "--port", "0", "--workers", "2", "--model", str(tmp_path / "bad.onnx"))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and "is not a usable ONNX model" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_cli("serve", "--port", "0", "--workers", "0")
    assert proc.returncode == 2 and "--workers 0 is out of range" in proc.stderr


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process tree from /proc")
def test_sigterm_while_the_workers_start_stops_them_too(shipped_model):
    """SIGTERM before every worker was ready killed the supervisor alone (the default action), and its
    workers served on without it."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnx", "serve", "--port", "0", "--workers", "2", "--model", str(shipped_model)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while len(workers) < 2 and time.monotonic() < deadline:  # spawned; loading their models takes longer
            workers = _children(proc.pid)
            time.sleep(0.01)
        assert len(workers) == 2, "the workers did not start"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        deadline = time.monotonic() + 30
        while any(_state(pid) != "Z" for pid in workers) and time.monotonic() < deadline:  # Z: ended or gone
            time.sleep(0.05)
        assert all(_state(pid) == "Z" for pid in workers), "a worker outlived its supervisor"
        assert "Traceback" not in proc.stderr.read()
    finally:
        for pid in workers:  # what the old supervisor left serving
            if _state(pid) != "Z":
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
