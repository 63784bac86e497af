"""Fixtures of the server tests: one real `cnnx serve` process per module, on the shipped model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serve.client import Server

for _name in ("starlette", "uvicorn", "prometheus_client", "python_multipart"):
    pytest.importorskip(_name, reason='the server\'s packages are not installed: pip install -e ".[serve]"')

DIGITS = Path(__file__).resolve().parents[2] / "cnnx" / "samples" / "digits"
TIMEOUT = "3"  # seconds for a request to arrive: the slow-client cases wait this long


@pytest.fixture(scope="module")
def server(shipped_model: Path) -> Iterator[Server]:
    srv = Server("--model", str(shipped_model), "--request-timeout", TIMEOUT, "--max-delay-ms", "2")
    yield srv
    assert srv.stop() == 0, "".join(srv.lines)


@pytest.fixture(scope="session")
def sample_files() -> list[Path]:
    """The digits shipped in cnnx/samples/digits: MNIST PNGs, a canvas drawing, phone photos (JPEG)."""
    return sorted(p for p in DIGITS.iterdir() if p.suffix in (".png", ".jpg"))
