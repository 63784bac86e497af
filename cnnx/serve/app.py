"""The routes of ``cnnx serve``: images in (/predict), the Open Inference Protocol (/v2/...),
the page (/), metrics (/metrics). ``build_app(config)`` loads the models and returns the ASGI app.

Every error a client can cause is a JSON ``{"error": "..."}`` with a 4xx status; an
unexpected failure is a 500 with the exception's type only (its traceback goes to the
server's log, never to the client).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from cnnx.core.errors import CnnxError
from cnnx.serve import v2
from cnnx.serve.batcher import Job
from cnnx.serve.bodies import content_type, query_flag, query_int, read_body, read_images, within
from cnnx.serve.config import ServeConfig
from cnnx.serve.errors import RequestError
from cnnx.serve.metrics import Metrics, MetricsMiddleware
from cnnx.serve.models import Model, Repository

log = logging.getLogger("cnnx.serve")
BIG_JSON = 64 * 1024  # bytes: a v2 body this large is parsed off the event loop


class Service:
    """What the routes share: the settings, the models, the metrics.

    ``announce(name)``: called after a reload through the route succeeded (with several
    workers: so that the others reload too); None for a single server process.
    """

    def __init__(self, config: ServeConfig, announce: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.announce = announce
        self.metrics = Metrics()
        self.repo = Repository(config, observe=self._batched)
        self.closing = False
        for model in self.repo.models.values():
            self.track(model)

    def _batched(self, name: str, images: int) -> None:
        """One model run of ``images`` images (called by the model's batcher)."""
        self.metrics.batch.labels(name).observe(images)
        model = self.repo.models.get(name)
        if model is not None:
            self._queued(model)

    def _queued(self, model: Model) -> None:
        """The queue-depth gauge, set when the queue changes (a gauge several workers can add up)."""
        self.metrics.queue.labels(model.name).set(len(model.batcher.queue))

    def track(self, model: Model) -> None:
        m = self.metrics
        self._queued(model)
        m.version.labels(model.name).set(model.version)
        m.load.labels(model.name).set(model.load_seconds)

    async def run(self, model: Model, job: Job) -> Any:
        """(version, answer) for ``job``, through the model's batcher; 503 when it does not answer in time."""
        future = model.batcher.submit(job)
        self._queued(model)
        try:
            return await within(self.config.request_timeout, future)
        except asyncio.TimeoutError:
            raise RequestError(
                503, f"the model did not answer within {self.config.request_timeout:g} s", headers={"Retry-After": "1"}
            ) from None

    async def reload(self, name: str) -> Model:
        """Reload ``name``, logged either way (whether by SIGHUP, the route or another worker, the operator
        reads in the log which version serves)."""
        try:
            model = await run_in_threadpool(self.repo.reload, name)
        except RequestError as exc:
            if exc.status == 422:  # a model file that did not load (400/403/404: a request for no model, not a reload)
                self.metrics.reloads.labels(name if name in self.repo.models else "other", "failed").inc()
            log.warning("cnnx serve: %s%s", "" if exc.status == 422 else "reload refused: ", exc)  # 422 names the model
            raise
        self.metrics.reloads.labels(name, "ok").inc()
        self.track(model)
        log.warning("cnnx serve: reloaded %s (version %d)", name, model.version)
        return model

    async def reload_logged(self, name: str) -> None:
        """Reload ``name``; on failure the old model keeps serving (SIGHUP, other workers)."""
        with suppress(RequestError):
            await self.reload(name)

    async def reload_all(self) -> None:
        """SIGHUP: reload every model."""
        for name in list(self.repo.models):
            await self.reload_logged(name)


def _service(request: Request) -> Service:
    return request.app.state.service


class Predict:
    """POST /predict (the route every image takes) as a bare ASGI app.

    Starlette wraps a function route in a Request/Response pair, an exception wrapper and
    its own send wrapper on every call; here only the Request is made, and the answer is
    sent as two ASGI messages. Errors are raised as from every other route: the app's
    exception handlers answer them (a JSON error with a 4xx status).
    """

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        request = Request(scope, receive)
        s = _service(request)
        model = s.repo.get(request.query_params.get("model"))
        k = query_int(request, "top_k", s.config.top_k, 1, 100_000)
        preview = query_flag(request, "preprocessed")
        with model.batcher.arriving():
            uploads = await read_images(request, s.config)
        version, preds = await s.run(model, Job(uploads=uploads, top_k=k, preview=preview))
        body: dict[str, Any] = {"model": model.name, "version": version, "predictions": [p.to_dict() for p in preds]}
        status = 200
        if not any(p.ok for p in preds):  # nothing classified: the request was bad, each reason is listed
            body["error"] = "; ".join(p.error or "" for p in preds[:3]) + (" ..." if len(preds) > 3 else "")
            status = 400
        content = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})


async def infer(request: Request) -> Response:
    s = _service(request)
    model = s.repo.get(request.path_params["name"])
    if content_type(request) not in ("application/json", ""):
        raise RequestError(415, f"Content-Type {content_type(request)!r} is not JSON", "send application/json")
    with model.batcher.arriving():
        body = await read_body(request, s.config.max_body, s.config.request_timeout)
    if len(body) > BIG_JSON:
        x, names, rid = await run_in_threadpool(v2.parse_infer, body, model, s.config.max_images)
    else:
        x, names, rid = v2.parse_infer(body, model, s.config.max_images)
    _, logits = await s.run(model, Job(tensor=x))
    return JSONResponse(v2.infer_response(model, logits, names, rid))


async def model_metadata(request: Request) -> Response:
    return JSONResponse(v2.model_metadata(_service(request).repo.get(request.path_params["name"])))


async def model_ready(request: Request) -> Response:
    model = _service(request).repo.get(request.path_params["name"])
    return JSONResponse({"name": model.name, "ready": True})


async def live(request: Request) -> Response:
    return JSONResponse({"live": True})


async def ready(request: Request) -> Response:
    closing = _service(request).closing
    return JSONResponse({"ready": not closing}, status_code=503 if closing else 200)


async def server_metadata(request: Request) -> Response:
    return JSONResponse(v2.server_metadata())


async def repository_index(request: Request) -> Response:
    models = list(_service(request).repo.models.values())  # a copy: a reload may add one meanwhile
    return JSONResponse([{"name": m.name, "version": str(m.version), "state": "READY"} for m in models])


async def repository_load(request: Request) -> Response:
    service = _service(request)
    model = await service.reload(request.path_params["name"])
    if service.announce is not None:
        service.announce(model.name)
    return JSONResponse({"name": model.name, "version": model.version, "load_seconds": round(model.load_seconds, 4)})


async def metrics(request: Request) -> Response:
    body, kind = _service(request).metrics.render()
    return Response(body, media_type=kind)


async def page(request: Request) -> Response:
    from cnnx.serve.page import PAGE

    return HTMLResponse(PAGE)


async def _request_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestError)
    return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=exc.headers)


async def _cnnx_error(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": str(exc)}, status_code=400)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    what = {404: "no route", 405: "method not allowed:"}.get(exc.status_code, exc.detail)
    return JSONResponse({"error": f"{what} {request.method} {request.url.path[:200]}"}, status_code=exc.status_code)


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("cnnx serve: %s %s failed", request.method, request.url.path[:200], exc_info=exc)
    return JSONResponse({"error": f"internal error ({type(exc).__name__}); the server's log has the details"}, 500)


ROUTES = [
    Route("/", page, methods=["GET"]),
    Route("/predict", Predict(), methods=["POST"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/v2", server_metadata, methods=["GET"]),
    Route("/v2/health/live", live, methods=["GET"]),
    Route("/v2/health/ready", ready, methods=["GET"]),
    Route("/v2/models/{name}", model_metadata, methods=["GET"]),
    Route("/v2/models/{name}/ready", model_ready, methods=["GET"]),
    Route("/v2/models/{name}/infer", infer, methods=["POST"]),
    Route("/v2/repository/index", repository_index, methods=["POST", "GET"]),
    Route("/v2/repository/models/{name}/load", repository_load, methods=["POST"]),
]


def build_app(config: ServeConfig, announce: Callable[[str], None] | None = None) -> Starlette:
    """The ASGI app with its models loaded and checked (raises CnnxError for a model that cannot serve).
    ``announce``: see ``Service``."""
    service = Service(config, announce)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        # no SIGHUP (Windows), or not the main thread: reloading stays with the route
        with suppress(AttributeError, NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(service.reload_all()))
        yield
        service.closing = True
        await service.repo.close(config.shutdown_timeout)

    app = Starlette(
        routes=ROUTES,
        middleware=[Middleware(MetricsMiddleware, metrics=service.metrics)],
        exception_handlers={
            RequestError: _request_error,
            CnnxError: _cnnx_error,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
        lifespan=lifespan,
    )
    app.state.service = service
    return app
