"""Prometheus metrics of one server, and the ASGI middleware that counts and times every request.

Each server has its own registry (not prometheus_client's global one), so two servers
in one process never share or clash. Routes are labelled by their template
(``/v2/models/{name}/infer``), never by the raw path, so clients cannot grow the label set.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# seconds: a 28x28 digit answers in about a millisecond; a request of 256 photos in seconds
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
METHODS = frozenset(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"])  # any other: "other"
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)  # images per model run
# where the worker processes of one `cnnx serve --workers N` keep their values (prometheus_client's
# multiprocess mode reads it when it is imported); unset for a single server process
SHARED_ENV = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    """The server's counters, histograms and gauges; ``render()`` is the /metrics page."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "cnnx_requests",
            "HTTP requests answered, by route, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "cnnx_request_seconds",
            "Time from request to response, by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch = Histogram(
            "cnnx_batch_images", "Images (or tensor rows) per model run", ["model"], buckets=BATCH_BUCKETS, registry=r
        )
        # gauges: set when they change; with several workers, summed (queue) or the extreme over live ones
        self.queue = Gauge(
            "cnnx_queue_depth", "Requests waiting for the model", ["model"], registry=r, multiprocess_mode="livesum"
        )
        self.load = Gauge(
            "cnnx_model_load_seconds",
            "Seconds the model's last load and check took (the slowest worker's)",
            ["model"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.version = Gauge(
            "cnnx_model_version",
            "Version of the model now serving (1 + reloads; with several workers, the oldest any serves)",
            ["model"],
            registry=r,
            multiprocess_mode="livemin",
        )
        self.reloads = Counter("cnnx_model_reloads", "Model reloads, by result", ["model", "result"], registry=r)

    def render(self) -> tuple[bytes, str]:
        shared = os.environ.get(SHARED_ENV)
        if not shared:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        from prometheus_client import multiprocess

        every = CollectorRegistry()  # every worker's values, read from their files
        multiprocess.MultiProcessCollector(every, path=shared)
        return generate_latest(every), CONTENT_TYPE_LATEST


# the answer to a request still running when the server's shutdown deadline ends
SHUT_DOWN = json.dumps({"error": "the server shut down before this request finished (--shutdown-timeout)"}).encode()
SHUT_DOWN_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(SHUT_DOWN)).encode()),
    (b"connection", b"close"),
]


class MetricsMiddleware:
    """Counts every HTTP request by route template and status, and times it; answers one that the shutdown
    deadline cancels."""

    def __init__(self, app: Callable, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics
        # (route, method, status) -> (its request counter, its route's latency histogram): labels() takes a
        # lock and checks the names on every call; the label sets are few (routes x methods x statuses)
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering
        started = False

        async def sending(message: dict[str, Any]) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except asyncio.CancelledError:
            # uvicorn cancels what still runs when --shutdown-timeout ends: unanswered, the client would get
            # its plain-text 500 and the log a traceback. Answered here, the task ends as any other
            if started:
                raise
            status = 503
            await send({"type": "http.response.start", "status": status, "headers": SHUT_DOWN_HEADERS})
            await send({"type": "http.response.body", "body": SHUT_DOWN})
        finally:
            label = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope.get("method", "")
            key = (label, method if method in METHODS else "other", status)
            children = self._children.get(key)
            if children is None:
                m = self.metrics
                children = self._children[key] = (m.requests.labels(*key[:2], str(status)), m.latency.labels(label))
            children[0].inc()
            children[1].observe(time.perf_counter() - start)
