"""``cnnx serve``: a torch-free HTTP server for exported models (Starlette on uvicorn, the ``serve`` extra).

Images in (``POST /predict``, answered as ``cnnx infer --json`` answers), the Open Inference
Protocol v2 (``/v2/...``), micro-batching, Prometheus ``/metrics``, hot reload, and a page at ``/``.
Imports the runtime and core only; the web stack loads when the server is built.
"""

from __future__ import annotations

from cnnx.serve.config import ServeConfig

__all__ = ["ServeConfig"]
