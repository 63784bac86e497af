"""What ``cnnx serve`` runs with: one dataclass, one commented field per line, checked on creation."""

from __future__ import annotations

from dataclasses import dataclass

from cnnx.core.errors import ConfigError
from cnnx.core.machine import physical_cores

MB = 1024 * 1024


@dataclass
class ServeConfig:
    """The server's settings; ``cnnx serve`` maps its options onto these 1:1."""

    model: str | None = None  # a model file (.onnx, .ort, .xml, .tflite) or a folder of them; None = shipped
    host: str = "127.0.0.1"  # address to bind: loopback unless told otherwise
    port: int = 8000  # TCP port; 0 = any free port (the one chosen is printed)
    threads: int | None = None  # onnxruntime intra-op threads per model; None = model_threads; 0 = physical cores
    preprocess: str | None = None  # None = the recipe each model's spec names; "plain" = resize only
    max_batch: int = 64  # images run through the model together, at most (a larger request runs alone)
    max_delay_ms: float = 2.0  # how long a batch waits for requests still being read, at most, in ms
    max_queue: int = 256  # requests waiting for the model; beyond this: 503 with Retry-After
    max_body_mb: float = 16.0  # largest request body, in MiB; beyond it: 413
    max_images: int = 256  # images in one request, at most; beyond it: 413
    max_pixels: int = 40_000_000  # largest image accepted (width x height), checked before decoding
    request_timeout: float = 30.0  # seconds to receive a request (head and body) and to answer it
    shutdown_timeout: float = 30.0  # seconds in-flight requests get to finish after SIGTERM
    top_k: int = 1  # classes listed per image when a request does not say (?top_k=N)
    access_log: bool = False  # one line per request on stderr (costs throughput)
    workers: int = 1  # server processes sharing the socket (cnnx.serve.workers); 1 = this process alone

    def __post_init__(self) -> None:
        checks = [
            ("--port", self.port, 0 <= self.port <= 65535, "0 to 65535"),
            ("--threads", self.threads, self.threads is None or self.threads >= 0, "0 (automatic) or more"),
            ("--max-batch", self.max_batch, self.max_batch >= 1, "at least 1"),
            ("--max-delay-ms", self.max_delay_ms, 0 <= self.max_delay_ms <= 1000, "0 to 1000"),
            ("--max-queue", self.max_queue, self.max_queue >= 1, "at least 1"),
            ("--max-body-mb", self.max_body_mb, 0 < self.max_body_mb <= 1024, "above 0, at most 1024"),
            ("--max-images", self.max_images, self.max_images >= 1, "at least 1"),
            ("--max-pixels", self.max_pixels, self.max_pixels >= 1, "at least 1"),
            ("--request-timeout", self.request_timeout, self.request_timeout > 0, "above 0"),
            ("--shutdown-timeout", self.shutdown_timeout, self.shutdown_timeout >= 0, "0 or more"),
            ("--top-k", self.top_k, self.top_k >= 1, "at least 1"),
            ("--workers", self.workers, 1 <= self.workers <= 64, "1 to 64"),
        ]
        if self.preprocess not in (None, "plain"):
            raise ConfigError(f"--preprocess {self.preprocess!r} is not auto or plain")
        for option, value, ok, want in checks:
            if not ok:
                raise ConfigError(f"{option} {value} is out of range", f"give {want}")

    @property
    def model_threads(self) -> int:
        """Each model's threads: --threads, or by default the physical cores shared among the worker
        processes (at least one each), so a lone server runs a large batch on every core and N workers
        do not take N times the cores between them."""
        if self.threads is not None:
            return self.threads
        return max(1, physical_cores() // self.workers)

    @property
    def max_body(self) -> int:
        """The body limit in bytes."""
        return int(self.max_body_mb * MB)
