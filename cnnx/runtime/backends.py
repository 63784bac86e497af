"""Which runtime opens a model file: the one place the edge runtime chooses a loader by suffix.

``open_model(path)`` returns an object with ``spec``, ``path``, ``threads`` and ``run(x) -> (N, K)
float32 logits``; ``.onnx`` and ``.ort`` files (and anything else, so a wrongly named ONNX file
keeps working, and a PyTorch file gets its own message) open in onnxruntime through
``cnnx.runtime.session.OnnxModel``, ``.xml`` files in OpenVINO through
``cnnx.runtime.openvino_model.OpenVinoModel``, ``.tflite`` files in LiteRT through
``cnnx.runtime.tflite_model.TfliteModel``. Another runtime adds one entry to ``LOADERS``, with its
package imported inside its loader, so a missing optional package costs nothing until its file
is opened.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from cnnx.core.errors import ModelFileError
from cnnx.core.spec import ModelSpec, SpecOptions
from cnnx.runtime.openvino_model import OpenVinoModel
from cnnx.runtime.session import OnnxModel
from cnnx.runtime.sources import model_file
from cnnx.runtime.tflite_model import TfliteModel


class Model(Protocol):
    """A model file opened for inference."""

    path: Path
    threads: int  # intra-op threads the runtime was given
    input_name: str  # the graph's input tensor (what the server's v2 protocol names)
    spec: ModelSpec  # read from the file (or made from --mean/--std/--size for a foreign ONNX file)

    def run(self, x: np.ndarray) -> np.ndarray:
        """(N, C, H, W) float32 normalised -> (N, K) float32 logits."""


Loader = Callable[[Path, int | None, SpecOptions | None], Model]


# lower-case file suffix -> loader; a suffix not listed opens as ONNX
LOADERS: dict[str, Loader] = {
    ".onnx": OnnxModel,
    ".ort": OnnxModel,  # onnxruntime's own format, from `cnnx export --format ort`
    ".xml": OpenVinoModel,  # OpenVINO IR, from `cnnx export --format openvino` (needs cnnx[openvino])
    ".tflite": TfliteModel,  # LiteRT, from `cnnx export --format tflite` (needs cnnx[litert-runtime])
}
# files cnnx exports that this runtime does not run: lower-case suffix -> (what the file is, the way out)
NOT_RUN: dict[str, tuple[str, str]] = {
    ".pte": (
        "an ExecuTorch program",  # its Python runtime takes torch tensors, and the edge runtime never loads torch
        "run it with ExecuTorch's runtime in your application, or give the .onnx file exported beside it",
    ),
    ".bpte": (
        "ExecuTorch's bundled program (the .pte with its test images, for executor_runner)",
        "`cnnx verify NAME.pte` checks the program; or run this file in ExecuTorch's executor_runner built "
        "with bundled-program support",
    ),
}


def open_model(path: str | Path, threads: int | None = None, options: SpecOptions | None = None) -> Model:
    """The model file ``path`` opened by the runtime its suffix names (ONNX when none does); a training
    run folder means the ONNX file `cnnx export RUN` wrote into it (cnnx.runtime.sources.model_file).

    ``threads``: intra-op threads, None or 0 = the physical cores; ``options``: the spec for a
    file that carries none (``--mean/--std/--size``). Raises ModelFileError for a file that
    cannot be used, naming the way out.
    """
    path = model_file(path)
    if path.suffix.lower() in NOT_RUN:
        what, way_out = NOT_RUN[path.suffix.lower()]
        raise ModelFileError(
            f"{path} is {what}; cnnx runs ONNX (.onnx, .ort), OpenVINO (.xml) and LiteRT (.tflite) files", way_out
        )
    return LOADERS.get(path.suffix.lower(), OnnxModel)(path, threads, options)


def metadata(model: Model) -> dict[str, str]:
    """The key/value metadata the opened file carries (ONNX ``metadata_props``); empty where there is none."""
    session = getattr(model, "session", None)
    if session is None:
        return dict(getattr(model, "metadata", {}) or {})
    return dict(session.get_modelmeta().custom_metadata_map)
