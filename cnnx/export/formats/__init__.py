"""The export formats, one module each, dispatched from ``FORMATS``; no format is named anywhere else.

Every module has the same shape: ``SUFFIX`` (the file's ending), ``METHODS`` (ways to make the
file, tried in order until one passes the parity gate), ``export(model, spec, path, **options)
-> Path`` and ``load(path, threads)`` returning an object with ``run``, ``spec``, ``signature``
and ``write_spec``. A format built from another one's file names it in ``REQUIRES``; one that
writes files beside its own names their endings in ``COMPANIONS``; one whose files carry
the self-check ``cnnx verify`` runs (``cnnx.core.selfcheck``) sets ``SELFCHECK = True``; one that needs a package
beyond the training install says why it cannot be made in ``missing() -> str | None``. Its
tolerances live in ``cnnx.export.parity.GATES`` under the same name.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from cnnx.core.spec import ModelSpec
from cnnx.export.formats import (
    executorch_pte,
    litert_tflite,
    litert_tflite_int8,
    onnx_fp16,
    onnx_fp32,
    onnx_int8,
    openvino_ir,
    ort_format,
    torchscript,
)

FORMATS: dict[str, ModuleType] = {
    "onnx": onnx_fp32,
    "torchscript": torchscript,
    "onnx-int8": onnx_int8,
    "onnx-fp16": onnx_fp16,
    "ort": ort_format,
    "openvino": openvino_ir,
    "executorch": executorch_pte,
    "tflite": litert_tflite,
    "tflite-int8": litert_tflite_int8,
}


# Formats users ship to that cnnx does not make: ``--format all`` names each as left out, with why,
# rather than pass over it in silence. One that gets a module moves from here into FORMATS.
NOT_MADE: dict[str, str] = {}


def missing(name: str) -> str | None:
    """Why format ``name`` cannot be made on this machine (its tools are not installed), or None."""
    check = getattr(FORMATS[name], "missing", None)
    return check() if check is not None else None


def named_by(filename: str) -> tuple[str, str] | None:
    """(format, stem) of a file name that ends with a format's suffix, the longest that fits
    (``m.int8.onnx`` is onnx-int8's ``m``), or None."""
    fits = [(len(f.SUFFIX), name) for name, f in FORMATS.items() if filename.endswith(f.SUFFIX)]
    if not fits:
        return None
    name = max(fits)[1]
    return name, filename.removesuffix(FORMATS[name].SUFFIX)


def files_of(name: str, path: Path) -> list[Path]:
    """Every file format ``name`` writes for its main file ``path``: the file, then its companions."""
    stem = path.name.removesuffix(FORMATS[name].SUFFIX)
    return [path, *(path.parent / (stem + c) for c in getattr(FORMATS[name], "COMPANIONS", ()))]


class Loaded(Protocol):
    """What a format's ``load(path, threads)`` returns: the file opened as its consumer opens it."""

    path: Path

    def run(self, x: np.ndarray) -> np.ndarray:
        """(N, C, H, W) float32 normalised -> (N, K) logits."""

    def spec(self) -> ModelSpec:
        """The spec the file carries."""

    def signature(self) -> dict[str, Any] | None:
        """Declared inputs/outputs (names, shapes, types); None for a format that declares none."""

    def write_spec(self, spec: ModelSpec, selfcheck: str | None = None) -> Path:
        """Rewrite the file with ``spec`` (and the encoded self-check, in formats that carry one), the
        checked model unchanged."""
