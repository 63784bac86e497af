"""TFLite export: a ``.tflite`` flatbuffer for LiteRT (formerly TensorFlow Lite), fp32, made from the torch module.

Made by ``litert-torch`` (``litert_torch.convert``: ``torch.export``, lowered through StableHLO
to TFLite ops); the gate loads the file back with LiteRT's interpreter (``ai_edge_litert``, its
XNNPACK delegate on, as an application embeds it). The converter cannot lower cnnx's flatten
with a symbolic batch axis, so it converts a batch of ``BATCH`` image; the file is then given a
batch axis of any size (``with_metadata(free_batch=True)`` in ``cnnx.core.tfliteio``: shape
signatures ``[-1, ...]``, each RESHAPE's ``[1, ...]`` made ``[-1, ...]``), so LiteRT's
``resize_tensor_input`` runs many images per invoke, and the gate's random batches check it.
A graph with an op that is not known to keep rows apart keeps the fixed batch of one, and the
loader runs it one image at a time.

The spec is carried in the file itself, in the flatbuffer's ``metadata`` table under
``cnnx.spec`` (see ``cnnx.core.tfliteio``), so a ``.tflite`` needs nothing beside it and
``cnnx infer`` reads it with LiteRT alone (no torch).

Needs ``litert-torch`` (``pip install "cnnx[litert]"``), which cannot share the training
environment's dev tools: its dependency xdsl pins typing-extensions below 4.13, and selenium
(the dev extra) needs 4.15 or later. Install it in an environment of its own that sees the
training install's packages after its own (``.ci/litert`` builds one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnx.core.contract import first_line
from cnnx.core.errors import ModelFileError
from cnnx.core.fileio import atomic_write
from cnnx.core.quiet import native_stderr_held, notices_held
from cnnx.core.spec import Extra, ModelSpec
from cnnx.core.tfliteio import SELFCHECK_KEY, SPEC_KEY, open_tflite, read_metadata, with_metadata

SUFFIX = ".tflite"
METHODS = ("litert-torch",)
BATCH = 1  # images in the example the converter traces; the file is then resized to any batch
SELFCHECK = True  # the self-check travels in the metadata table, beside the spec
INSTALL = (
    'pip install "cnnx[litert]" in an environment of its own over the training install '
    "(.ci/litert builds one; it conflicts with the dev extra's selenium)"
)


def quiet() -> Any:
    """litert-torch's imports warn about deprecated APIs of its dependencies (jax, torch's pytree) and
    its converter reports progress through ``logging`` and a progress printer: none is the user's to
    act on."""
    return notices_held(
        ("torch.utils._pytree", "litert_torch", "absl", "jax"), (DeprecationWarning, FutureWarning, UserWarning)
    )


def missing() -> str | None:
    """Why this format cannot be made here, or None."""
    try:  # litert-torch's first import logs through absl (oneDNN notes) on stderr: silenced
        with quiet(), native_stderr_held():
            import ai_edge_litert.interpreter  # noqa: F401
            import litert_torch  # noqa: F401
    except Exception as exc:  # ImportError, or a litert-torch built for another torch
        return f"litert-torch is not installed or does not load ({first_line(exc)[:200]}): {INSTALL}"
    return None


def flatbuffer(model: nn.Module, spec: ModelSpec) -> bytes:
    """The ``.tflite`` bytes of ``model`` (eval mode) for a batch of ``BATCH``."""
    import contextlib
    import io

    with quiet(), native_stderr_held():
        import litert_torch

    example = torch.zeros((BATCH, *spec.input_shape), dtype=torch.float32)
    # the converter prints its progress on stdout and stderr (Python and C++): none of it is cnnx's output
    with torch.no_grad(), native_stderr_held(), contextlib.redirect_stdout(io.StringIO()), quiet():
        edge = litert_torch.convert(model.eval(), (example,))
        return bytes(edge.model_content())


def spec_bytes(spec: ModelSpec) -> bytes:
    return json.dumps(spec.to_dict(), sort_keys=True).encode()


def export(model: nn.Module, spec: ModelSpec, path: Path, *, method: str = "litert-torch", **_: Any) -> Path:
    """Write ``model`` (eval mode, CPU) as an fp32 ``.tflite`` at ``path``, its spec in the file's metadata."""
    try:
        data = flatbuffer(model, spec)
    except Exception as exc:  # torch.export and the lowering raise errors of many types
        raise ModelFileError(f"TFLite export ({method}) failed: {first_line(exc)[:300]}") from None
    made = {Extra.FORMAT: "tflite", Extra.PRECISION: "fp32"}
    versions = {**spec.versions, "litert-torch": dist_version("litert-torch")}
    full = spec.replace(versions=versions, extra={**spec.extra, **made})
    data = with_metadata(data, {SPEC_KEY: spec_bytes(full)}, path, free_batch=True)
    atomic_write(path, lambda f: f.write(data))
    return path


def dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


class LoadedTflite:
    """A ``.tflite`` loaded back with LiteRT's interpreter, as an application loads it."""

    def __init__(self, path: Path, threads: int) -> None:
        self.path = Path(path)
        self.interpreter, self._run = open_tflite(self.path, threads)

    def run(self, x: np.ndarray) -> np.ndarray:
        return self._run(x)

    def signature(self) -> None:
        return None  # the converter names tensors its own way (serving_default_args_0); outputs are checked by shape

    def spec(self) -> ModelSpec:
        meta = read_metadata(self.path.read_bytes(), self.path)
        if SPEC_KEY not in meta:
            raise ModelFileError(f"{self.path} carries no cnnx spec", "export it with `cnnx export --format tflite`")
        return ModelSpec.from_dict(json.loads(meta[SPEC_KEY]))

    def write_spec(self, spec: ModelSpec, selfcheck: str | None = None) -> Path:
        """Rewrite the file's metadata with ``spec`` and ``selfcheck`` (the graph and weights copied unchanged)."""
        entries = {SPEC_KEY: spec_bytes(spec), **({SELFCHECK_KEY: selfcheck.encode()} if selfcheck else {})}
        data = with_metadata(self.path.read_bytes(), entries, self.path)
        atomic_write(self.path, lambda f: f.write(data))
        return self.path


def load(path: Path, threads: int) -> LoadedTflite:
    return LoadedTflite(path, threads)
