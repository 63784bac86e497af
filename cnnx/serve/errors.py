"""The server's one error: a request it refuses, with the HTTP status and a message naming what was wrong."""

from __future__ import annotations

from cnnx.core.errors import CnnxError


class RequestError(CnnxError):
    """A bad or refused request. ``status`` is the HTTP code (4xx, or 503 when the queue is full);
    the client gets ``{"error": message}`` and never a traceback."""

    def __init__(self, status: int, message: str, hint: str | None = None, headers: dict | None = None) -> None:
        super().__init__(message, hint)
        self.status = status
        self.headers = headers or {}


def bad(message: str, hint: str | None = None) -> RequestError:
    """400: the request is malformed."""
    return RequestError(400, message, hint)
