"""The export formats, one module each, dispatched from ``FORMATS``; no format is named anywhere else.

Every module has the same shape: ``SUFFIX`` (the file's ending), ``METHODS`` (ways to make the
file, tried in order until one passes the parity gate), ``export(model, spec, path, **options)
-> Path`` and ``load(path, threads)`` returning an object with ``run``, ``spec``, ``signature``
and ``write_spec``. A format built from another one's file names it in ``REQUIRES``. Its
tolerances live in ``cnnx.export.parity.GATES`` under the same name.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from cnnx.core.spec import ModelSpec
from cnnx.export.formats import onnx_fp32, onnx_int8, torchscript

FORMATS: dict[str, ModuleType] = {"onnx": onnx_fp32, "torchscript": torchscript, "onnx-int8": onnx_int8}


class Loaded(Protocol):
    """What a format's ``load(path, threads)`` returns: the file opened as its consumer opens it."""

    path: Path

    def run(self, x: np.ndarray) -> np.ndarray:
        """(N, C, H, W) float32 normalised -> (N, K) logits."""

    def spec(self) -> ModelSpec:
        """The spec the file carries."""

    def signature(self) -> dict[str, Any] | None:
        """Declared inputs/outputs (names, shapes, types); None for a format that declares none."""

    def write_spec(self, spec: ModelSpec) -> Path:
        """Rewrite the file with ``spec``, the checked model unchanged."""
