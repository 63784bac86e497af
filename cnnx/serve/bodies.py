"""Reading what a client sends, within limits: the body (size, time), the images in it, query numbers.

Every refusal is a RequestError naming what was wrong; nothing here lets a malformed
request reach the model, and nothing waits on a client for longer than the request timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from cnnx.core.contract import first_line
from cnnx.runtime.image import EncodedImage
from cnnx.serve.config import ServeConfig
from cnnx.serve.errors import RequestError, bad

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

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
        # closed: the rest of the body may still come, and a client that trickles it would hold the connection
        raise RequestError(
            408, f"the request body did not arrive within {timeout:g} s ({size:,} bytes came)", headers=CLOSE
        ) from None
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
    uploads = file_parts(body, request.headers.get("content-type", ""), config.max_images)
    if not uploads:
        raise bad("the multipart body holds no files", "send each image as a file part (filename=...)")
    return uploads


MAX_FIELDS = 100  # parts without a file name in one multipart body (read, then dropped)


def file_parts(body: bytes, header: str, max_images: int) -> list[EncodedImage]:
    """The file parts of a multipart/form-data body read whole, in order, each named by its file name
    (or, without one, its field name); parts that are not files are dropped. 400 for a malformed body,
    413 beyond ``max_images`` files.

    A body of the usual shape is cut at its boundaries (``_split``); anything else goes through
    python-multipart's parser, which says what is wrong with it. For one body of 256 digit PNGs the
    parser took 3.2 ms and the cut 1.4-1.6 ms (most of it python-multipart's Content-Disposition
    parser), in a one-off in-process timing on 2026-12-07; Starlette's form parser runs the same
    parser and spools every part to a temporary file (25-50 us a part).
    """
    boundary = parse_options_header(header)[1].get(b"boundary")
    if not boundary:
        raise bad("malformed multipart body: the Content-Type names no boundary")
    parts = _Parts(max_images)
    split = _split(body, boundary)
    if split is None:
        _parse(body, boundary, parts)
    else:
        for disposition, data in split:
            parts.add(disposition, data)
    return parts.files


# a part whose headers go beyond these takes python-multipart's parser (its own limits: 8 headers,
# 4,224 bytes a header line), so that the cut never accepts what the parser would refuse
CUT_HEADERS = 8
CUT_HEADER_BYTES = 4096
_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _split(body: bytes, boundary: bytes) -> list[tuple[bytes, bytes]] | None:
    """(Content-Disposition, data) of every part of a body of the usual shape (RFC 7578: the first
    delimiter at the start, CRLF line ends, header lines ``name: value`` with a token for a name, the
    close delimiter at the end), or None for any other body, for python-multipart to read."""
    dash = b"--" + boundary
    if not body.startswith(dash + b"\r\n"):
        return None
    delimiter = b"\r\n" + dash
    parts = []
    at = len(dash)  # where a part begins: CRLF, header lines, CRLF, CRLF, the data (only the data is copied)
    while body.startswith(b"\r\n", at):
        stop = body.find(delimiter, at)
        end = body.find(b"\r\n\r\n", at, stop) if stop >= 0 else -1
        if end < 0:
            return None
        lines = body[at + 2 : end].split(b"\r\n") if end > at else []
        if len(lines) > CUT_HEADERS:
            return None
        disposition = b""
        for line in lines:
            name, colon, value = line.partition(b":")
            if not colon or not name or len(line) > CUT_HEADER_BYTES or b"\r" in line or not _TOKEN.issuperset(name):
                return None
            if name.lower() == b"content-disposition":
                disposition = value.lstrip(b" ")  # the last one counts, as with the parser
        parts.append((disposition, body[end + 4 : stop]))
        at = stop + len(delimiter)
    return parts if body[at:] in (b"--", b"--\r\n") else None


def _parse(body: bytes, boundary: bytes, parts: _Parts) -> None:
    """python-multipart's parser, fed the body once."""
    parser = MultipartParser(boundary, parts.callbacks())
    try:
        parser.write(body)
        parser.finalize()
    except FormParserError as exc:
        raise bad(f"malformed multipart body ({first_line(exc, 200)})") from None


class _Parts:
    """The file parts of one body: python-multipart's callbacks collect them, or ``add`` one at a time."""

    def __init__(self, max_images: int) -> None:
        self.max_images = max_images
        self.files: list[EncodedImage] = []
        self.fields = 0  # parts without a file name so far
        self.name: list[bytes] = []  # the header being read: its name and value, as they come
        self.value: list[bytes] = []
        self.disposition = b""  # the part's Content-Disposition
        self.data: list[bytes] = []  # the part's bytes, as they come

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.begin,
            "on_header_field": lambda d, a, b: self.name.append(d[a:b]),
            "on_header_value": lambda d, a, b: self.value.append(d[a:b]),
            "on_header_end": self.header,
            "on_part_data": lambda d, a, b: self.data.append(d[a:b]),
            "on_part_end": lambda: self.add(self.disposition, b"".join(self.data)),
        }

    def begin(self) -> None:
        self.disposition, self.data = b"", []

    def header(self) -> None:
        if b"".join(self.name).strip().lower() == b"content-disposition":
            self.disposition = b"".join(self.value)
        self.name, self.value = [], []

    def add(self, disposition: bytes, data: bytes) -> None:
        """One part: a file is kept, a field counted (400 beyond MAX_FIELDS; 413 beyond max_images files)."""
        options = parse_options_header(disposition)[1] if disposition else {}
        filename = options.get(b"filename")
        if filename is None:
            self.fields += 1
            if self.fields > MAX_FIELDS:
                raise bad(f"malformed multipart body: over {MAX_FIELDS} parts that are not files")
            return
        if len(self.files) == self.max_images:
            raise RequestError(
                413, f"over {self.max_images} images in one request; this server takes at most {self.max_images}"
            )
        name = _text(filename) or _text(options.get(b"name", b"")) or f"part {len(self.files) + 1}"
        self.files.append(EncodedImage(name, data))


def _text(raw: bytes) -> str:
    """A header parameter as text: UTF-8, or Latin-1 when it is not (every byte is some Latin-1 character)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


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
