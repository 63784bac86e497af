"""The real `cnnx serve` in a subprocess on a free loopback port, and a plain HTTP client for it
(the standard library's http.client: what the tests send is exactly what goes over the wire)."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import REPO

STARTED = re.compile(r"listening on (http://[^ ]+) ")


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def multipart(files: list[tuple[str, bytes]], fields: dict[str, str] | None = None) -> tuple[bytes, str]:
    """(body, Content-Type) of a multipart/form-data upload: one file part per (name, bytes)."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in (fields or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for i, (name, data) in enumerate(files):
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image{i}"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        parts.append(head.encode("utf-8", "surrogateescape") + data + b"\r\n")  # a name may be raw bytes
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class Server:
    """``cnnx serve --port 0 ARGS`` as a user starts it; ``url`` once it says it is listening."""

    def __init__(self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cnnx", "serve", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=cwd or REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self.lines: list[str] = []
        self._url: list[str] = []
        self._said = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()  # drained, so the pipe never fills
        if not self._said.wait(120) or not self._url:
            self.proc.kill()
            raise AssertionError("cnnx serve did not start:\n" + "".join(self.lines))
        self.url = self._url[0]
        self.host, port = self.url.removeprefix("http://").rsplit(":", 1)
        self.port = int(port)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            found = STARTED.search(line)
            if found and not self._url:
                self._url.append(found.group(1))
                self._said.set()
        self._said.set()  # the process ended (before or after starting)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> Reply:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post_image(self, data: bytes, path: str = "/predict", kind: str = "image/png") -> Reply:
        return self.request("POST", path, data, {"Content-Type": kind})

    def post_files(self, files: list[tuple[str, bytes]], path: str = "/predict") -> Reply:
        body, kind = multipart(files)
        return self.request("POST", path, body, {"Content-Type": kind})

    def post_json(self, path: str, obj: Any) -> Reply:
        return self.request("POST", path, json.dumps(obj).encode(), {"Content-Type": "application/json"})

    def raw(self) -> socket.socket:
        """A bare TCP connection to the server, for clients that misbehave."""
        return socket.create_connection((self.host, self.port), timeout=30)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("cnnx serve did not stop on " + signal.Signals(sig).name) from None

    def resources(self) -> tuple[int, int]:
        """(open file descriptors, resident memory in bytes) of the server process (Linux /proc)."""
        fds = len(os.listdir(f"/proc/{self.pid}/fd"))
        status = Path(f"/proc/{self.pid}/status").read_text().splitlines()
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))  # kB
        return fds, rss * 1024

    def refuses_connections(self, within: float = 30) -> bool:
        """Whether new connections are refused (the listening socket closed) within ``within`` seconds."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
            except OSError:
                return True
            time.sleep(0.05)
        return False


@dataclass
class Load:
    """``threads`` clients each sending ``send()`` ``count`` times; the replies (or exceptions) by client."""

    threads: int
    count: int
    replies: dict[int, list[Any]] = field(default_factory=dict)

    def run(self, send: Any) -> dict[int, list[Any]]:
        start = threading.Barrier(self.threads)

        def client(k: int) -> None:
            start.wait()
            mine: list[Any] = []
            for i in range(self.count):
                try:
                    mine.append(send(k, i))
                except Exception as exc:  # counted as a failure by the test
                    mine.append(exc)
            self.replies[k] = mine

        workers = [threading.Thread(target=client, args=(k,)) for k in range(self.threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(300)
        return self.replies
