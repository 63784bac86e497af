"""Reading what a client sends, within limits: the body (size, time), the images in it, query numbers.

Every refusal is a RequestError naming what was wrong; nothing here lets a malformed
request reach the model, and nothing waits on a client for longer than the request timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from starlette.datastructures import UploadFile
from starlette.requests import Request

from cnnx.runtime.image import EncodedImage
from cnnx.serve.config import ServeConfig
from cnnx.serve.errors import RequestError, bad

T = TypeVar("T")
_timeout = getattr(asyncio, "timeout", None)  # Python 3.11+


async def within(seconds: float, work: Awaitable[T]) -> T:
    """``await work``, raising asyncio.TimeoutError after ``seconds``. With Python 3.11+ this is
    asyncio.timeout, which makes no task or future per call as wait_for does (every request waits twice)."""
    if _timeout is None:
        return await asyncio.wait_for(work, seconds)
    async with _timeout(seconds):
        return await work


RAW_TYPES = ("application/octet-stream", "")  # besides image/*: a body that is one image's bytes
DRAIN_FACTOR = 4  # an over-long body is read (and dropped) up to this many limits, so its client reads the 413


def content_type(request: Request) -> str:
    """The media type alone, lower-case ("" when the client sent none)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


# a refusal before the body was read whole: the connection cannot carry another request
CLOSE = {"Connection": "close"}


def _too_large(size: int | str, limit: int) -> RequestError:
    return RequestError(
        413,
        f"the body is {size} bytes; this server takes at most {limit:,}",
        "send fewer or smaller images, or start the server with a larger --max-body-mb",
        headers=CLOSE,
    )


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The whole body, at most ``limit`` bytes, arriving within ``timeout`` seconds (else 413 / 408)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise bad(f"Content-Length {declared[:40]!r} is not a number")
        if int(declared) > limit * DRAIN_FACTOR or (
            int(declared) > limit and "100-continue" in request.headers.get("expect", "").lower()
        ):
            raise _too_large(f"{int(declared):,}", limit)  # not read at all: the client may see the connection close
    chunks: list[bytes] = []
    size = 0

    async def collect() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size <= limit:
                chunks.append(chunk)
            elif size > limit * DRAIN_FACTOR:
                break

    try:
        await within(timeout, collect())
    except asyncio.TimeoutError:
        raise RequestError(408, f"the request body did not arrive within {timeout:g} s ({size:,} bytes came)") from None
    if size > limit:
        raise _too_large(f"over {limit:,}" if size > limit * DRAIN_FACTOR else f"{size:,}", limit)
    return b"".join(chunks)


async def read_images(request: Request, config: ServeConfig) -> list[EncodedImage]:
    """The images of a /predict request: a raw body (image/*, application/octet-stream) is one
    image; multipart/form-data holds one image per file part. 400/413/415 otherwise."""
    kind = content_type(request)
    if kind != "multipart/form-data" and not kind.startswith("image/") and kind not in RAW_TYPES:
        raise RequestError(
            415,
            f"Content-Type {kind!r} is not an image",
            "send the image's bytes as image/png, image/jpeg, ... or application/octet-stream, "
            "or several images as multipart/form-data",
        )
    body = await read_body(request, config.max_body, config.request_timeout)
    if not body:
        raise bad("the body is empty", "send an image's bytes, or multipart/form-data with image files")
    if kind != "multipart/form-data":
        return [EncodedImage("body", body)]
    uploads = await _parts(request, body, config.max_images)
    if not uploads:
        raise bad("the multipart body holds no files", "send each image as a file part (filename=...)")
    if len(uploads) > config.max_images:
        raise RequestError(413, f"{len(uploads)} images in one request; this server takes at most {config.max_images}")
    return uploads


async def _parts(request: Request, body: bytes, max_images: int) -> list[EncodedImage]:
    """The file parts of a multipart body already read (Starlette's parser over the bytes)."""
    from starlette.formparsers import MultiPartException

    replayed = Request(request.scope, receive=_receive(body))
    try:
        form = await replayed.form(max_files=max_images + 1, max_fields=100, max_part_size=len(body) + 1)
    except MultiPartException as exc:
        raise bad(f"malformed multipart body: {exc.message}") from None
    except Exception as exc:  # python-multipart meets hostile bytes with assorted errors
        raise bad(f"malformed multipart body ({type(exc).__name__})") from None
    try:
        uploads = []
        for field, value in form.multi_items():
            if isinstance(value, UploadFile):
                uploads.append(EncodedImage(value.filename or field, await value.read()))
        return uploads
    finally:
        await form.close()  # large parts spill into temporary files: close them now


def _receive(body: bytes) -> Callable[[], Awaitable[dict]]:
    """An ASGI ``receive`` that hands over ``body`` whole, then says the client left."""
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    """Query parameter ``name`` as an int in [low, high], ``default`` when absent; 400 otherwise."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.strip().lstrip("-").isdigit() or not low <= int(raw) <= high:
        raise bad(f"{name}={raw[:40]!r} is not a whole number from {low} to {high}")
    return int(raw)


def query_flag(request: Request, name: str) -> bool:
    """?name=1 / true / yes -> True; absent, 0, false, no -> False; 400 for anything else."""
    raw = request.query_params.get(name, "0").strip().lower()
    if raw not in ("1", "true", "yes", "0", "false", "no", ""):
        raise bad(f"{name}={raw[:40]!r} is not true or false")
    return raw in ("1", "true", "yes")
