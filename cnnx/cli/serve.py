"""``cnnx serve``: the HTTP server for exported models (edge runtime: no torch on this path)."""

from __future__ import annotations

import os

import click

from cnnx.cli import main
from cnnx.core.errors import ConfigError

# the packages of the `serve` extra, by import name (python-multipart reads multipart uploads)
STACK = ("starlette", "uvicorn", "prometheus_client", "python_multipart")


def _check_stack() -> None:
    import importlib

    missing = []
    for name in STACK:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ConfigError(
            f"cnnx serve needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed",
            'install the server: pip install "cnnx[serve]"',
        )


@main.command()
@click.option(
    "--model",
    "-m",
    type=click.Path(),
    help="A model file from `cnnx export` (.onnx, .ort, OpenVINO .xml or .tflite), or a folder of them (each served "
    "under its file name without .onnx; other files keep their suffix: mnist.ort). A training run "
    "folder (best.pt or last.pt inside) serves the ONNX file `cnnx export RUN` wrote into it (RUN/best.onnx; "
    "RUN/last.onnx when it has no best.pt). [default: the MNIST model shipped with cnnx]",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (0.0.0.0: every interface; any but loopback is warned about: no authentication).",
)
@click.option("--port", type=int, default=8000, show_default=True, help="TCP port; 0 = any free port (printed).")
@click.option(
    "--threads",
    type=click.IntRange(min=0),
    default=None,
    help="onnxruntime (or OpenVINO) threads per model; 0 = physical cores. "
    "[default: the physical cores shared among the --workers, at least 1 each]",
)
@click.option(
    "--preprocess",
    type=click.Choice(["auto", "plain"]),
    default="auto",
    show_default=True,
    help="auto = the recipe each model's spec names (e.g. mnist-digit); plain = resize only.",
)
@click.option(
    "--max-batch", type=int, default=64, show_default=True, help="Images run through the model together, at most."
)
@click.option(
    "--max-delay-ms",
    type=float,
    default=2.0,
    show_default=True,
    help="How long a batch waits for requests still arriving.",
)
@click.option(
    "--max-queue",
    type=int,
    default=256,
    show_default=True,
    help="Requests waiting for the model; more get 503 + Retry-After.",
)
@click.option(
    "--max-body-mb", type=float, default=16.0, show_default=True, help="Largest request body, MiB; larger: 413."
)
@click.option("--max-images", type=int, default=256, show_default=True, help="Images in one request, at most.")
@click.option(
    "--max-pixels", type=int, default=40_000_000, show_default=True, help="Largest image (width x height) decoded."
)
@click.option(
    "--request-timeout",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds to receive a request and to answer it.",
)
@click.option(
    "--shutdown-timeout",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds in-flight requests get after SIGTERM.",
)
@click.option(
    "--top-k", type=int, default=1, show_default=True, help="Classes per image when a request does not say (?top_k=N)."
)
@click.option(
    "--workers",
    type=int,
    default=1,
    show_default=True,
    help="Server processes sharing the port (each loads the models): more throughput on a multi-core box, "
    "more memory. /metrics adds them up; SIGHUP and reloads reach every one.",
)
@click.option("--access-log/--no-access-log", default=False, show_default=True, help="One line per request on stderr.")
def serve(**options: object) -> None:
    """Serve a model over HTTP: POST /predict (images), the v2 inference protocol (/v2/...),
    /metrics, and a page at / to draw or photograph a digit. No torch needed.

    SIGTERM (or Ctrl-C) stops it after the requests in flight finish; SIGHUP, or
    POST /v2/repository/models/NAME/load, reloads a model from its file, and keeps the old
    one serving if the new file does not load.

    Example: cnnx serve --model artifacts/runs/mnist/best.onnx --port 8000
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy's BLAS: one thread, as for cnnx infer
    from cnnx.runtime.sources import model_file
    from cnnx.serve.config import ServeConfig

    options["preprocess"] = None if options["preprocess"] == "auto" else options["preprocess"]
    if options["model"] is not None:  # a run folder: its exported ONNX file, not every file in it
        options["model"] = str(model_file(str(options["model"])))
    config = ServeConfig(**options)  # type: ignore[arg-type]
    _check_stack()
    if config.workers > 1:
        from cnnx.serve.workers import supervise as run
    else:
        from cnnx.serve.server import serve as run

    served = _served(config.model)

    def started(url: str) -> None:
        click.echo(f"cnnx serve: listening on {url} ({served}; the page: {url}/; stop: Ctrl-C or SIGTERM)", err=True)
        warning = _exposed(config.host, url)
        if warning is not None:
            click.echo(warning, err=True)

    run(config, started)


def _exposed(host: str, url: str) -> str | None:
    """The start's warning when ``host`` is not loopback (127.0.0.0/8, ::1, localhost): the server has no
    authentication, and its routes include reloading models. None on loopback."""
    import ipaddress

    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a name: only localhost is known to stay on this machine
        loopback = host.lower() == "localhost"
    if loopback:
        return None
    return (
        f"cnnx serve: warning: --host {host} is not loopback: anyone who reaches port {url.rsplit(':', 1)[1]} "
        "can classify images and reload models (there is no authentication); keep it behind a firewall "
        "or an authenticating proxy"
    )


def _served(model: str | None) -> str:
    """The start line's word on what is served: a model's name is what /predict answers with and
    /v2/models/NAME takes, and a run folder's file is named best, not after its dataset."""
    from cnnx.runtime.predict import resolve_model
    from cnnx.serve.models import name_of

    source = resolve_model(model)
    return f"every model file in {source}, by file name" if source.is_dir() else f"model {name_of(source)}"
