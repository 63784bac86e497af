"""bench/serve_load.py's process handling: the memory of a server and its workers, and ending them all."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import REPO

pytestmark = pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="needs Linux's /proc")

# a server stand-in: a parent that starts a worker holding 60 MB it has written to, then both wait
WORKER = "b = b'x' * 60_000_000; print(1, flush=True); import time; time.sleep(120)"
SERVER = f"""
import subprocess, sys, time
worker = subprocess.Popen([sys.executable, "-c", {WORKER!r}], stdout=subprocess.PIPE, text=True)
worker.stdout.readline()
print(worker.pid, flush=True)
time.sleep(120)
"""


def _serve_load():
    spec = importlib.util.spec_from_file_location("serve_load", REPO / "bench" / "serve_load.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _gone(pid: int) -> bool:
    """Ended: no such process, or a zombie left for a parent that no longer waits."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_a_servers_memory_counts_its_workers_and_stop_ends_its_process_group():
    sl = _serve_load()
    proc = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        worker = int(proc.stdout.readline())
        alone, tree = sl.tree_pss_mb(worker), sl.tree_pss_mb(proc.pid)
        assert alone > 55  # the worker's 60 MB
        assert tree > alone + 3  # and the parent's interpreter beside it
        assert sl.tree_pss_mb(worker) < tree  # a worker's tree leaves out its parent
    finally:
        sl.stop(proc)
    assert proc.poll() is not None
    deadline = time.monotonic() + 10
    while not _gone(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(worker), "the worker outlived its server: stop() must end the process group"
