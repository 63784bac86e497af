"""Running the app: uvicorn on a socket bound here (so ``--port 0`` can say which port it got),
with a deadline for each request's head, graceful shutdown on SIGTERM, and Pillow's pixel limit set.

uvicorn times out idle keep-alive connections but not a request head that stops arriving
half-way; ``HeadTimeout`` closes such a connection with a 408 after ``request_timeout``.
"""

from __future__ import annotations

import copy
import gc
import json
import logging
import signal
import socket
from collections.abc import Callable
from typing import Any

from cnnx.core.errors import ConfigError
from cnnx.serve.config import ServeConfig


def _protocol(timeout: float) -> type | str:
    """uvicorn's httptools protocol with a deadline from a request's first byte to its last header
    ("auto", uvicorn's pure-Python parser without that deadline, where httptools is not installed)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return "auto"

    body = json.dumps({"error": f"the request head did not arrive within {timeout:g} s"}).encode()
    late = (
        b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        + f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
        + body
    )

    class HeadTimeout(HttpToolsProtocol):
        _head_timer: Any = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()  # a connection that sends nothing at all is late too

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(timeout, self._late)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _late(self) -> None:
            self._head_timer = None
            if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
                self.transport.write(late)
                self.transport.close()

    return HeadTimeout


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (IPv6 when the host is one); ConfigError when it cannot."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}", "pick another --host or --port"
        ) from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(config: ServeConfig, started: Callable[[str], None] | None = None) -> None:
    """Load the models, bind, call ``started(url)``, and serve until SIGTERM or SIGINT (in-flight
    requests finish, up to ``shutdown_timeout`` seconds). Raises CnnxError for a model that
    cannot serve. One process; ``cnnx.serve.workers.supervise`` runs several."""
    from cnnx.serve.app import build_app

    app = build_app(config)  # before binding: a model that cannot serve is reported with the port untouched
    sock = bind(config.host, config.port)
    try:
        run_app(app, config, sock, started)
    finally:
        sock.close()


def run_app(app: Any, config: ServeConfig, sock: socket.socket, started: Callable[[str], None] | None) -> None:
    """Serve ``app`` on the bound ``sock`` until SIGTERM or SIGINT; ``started(url)`` once it listens."""
    import uvicorn
    from PIL import Image

    # the runtime refuses images over Pillow's limit before decoding them: the server's is its own
    Image.MAX_IMAGE_PIXELS = config.max_pixels
    url = url_of(sock)

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            # Everything loaded so far (modules, the models, the app) lives as long as the server: out
            # of the cyclic collector's sight, a full collection no longer walks it. Without this, one
            # now and then stalled every request in flight (bench/serve_load.py, 2026-12-07: p99 at 32
            # connections 11.3 ms, against 14.6 and 20.6 ms in two runs without)
            gc.collect()
            gc.freeze()
            if self.started and started is not None:  # the models are loaded and the batchers run
                started(url)

    # --access-log's line a request goes to stderr with the rest of the log (uvicorn's config sends it to stdout)
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    log_config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    server = Server(
        uvicorn.Config(
            app,
            http=_protocol(config.request_timeout),
            lifespan="on",
            log_level="warning",
            log_config=log_config,
            access_log=config.access_log,
            server_header=False,
            timeout_keep_alive=5,
            # seconds as given: 0 cancels what is still running at once (None, which an int() of 0 or
            # 0.5 gave before, waits for it without end)
            timeout_graceful_shutdown=config.shutdown_timeout,  # type: ignore[arg-type]
        )
    )
    if config.access_log:
        # uvicorn logs each request at INFO, and log_level="warning" set its access logger to WARNING too
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then raises the signal again for the handler
    # that was in place before it ran: a no-op one, so a clean shutdown ends with exit code 0
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
