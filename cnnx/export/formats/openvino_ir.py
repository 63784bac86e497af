"""OpenVINO export: the fp32 graph as OpenVINO IR, ``.xml`` (the graph) + ``.bin`` (the weights).

Converted with ``openvino.convert_model`` from the fp32 ONNX file rather than from the torch
module: on cnnx's MNIST model both give the same logits (max |diff| 1.3e-5 on the 10,000
test images), but the ONNX route keeps the tensor names ``input``/``logits`` and the batch
axis dynamic as they are, converts in 0.6 s instead of 2.6 s, and warns about nothing.
Weights stay float32 (``save_model``'s default would compress them to fp16), and the
runtime asks for f32 inference precision (OpenVINO's CPU plugin would otherwise run in
bf16 on CPUs that have it). The spec travels in the model's ``rt_info`` under
``cnnx/spec`` as JSON, and the self-check for ``cnnx verify`` under ``cnnx/selfcheck``.

Needs the ``openvino`` package: ``pip install "cnnx[openvino]"``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from cnnx.core.contract import BATCH_AXIS, first_line
from cnnx.core.errors import ModelFileError
from cnnx.core.openvinoio import INSTALL, RT_SELFCHECK, RT_SPEC, open_openvino, signals_held
from cnnx.core.spec import Extra, ModelSpec
from cnnx.export.formats.onnx_fp32 import made_from

SUFFIX = ".xml"
COMPANIONS = (".bin",)  # the weights, beside the graph
METHODS = ("from-onnx",)  # openvino.convert_model on the fp32 ONNX file
REQUIRES = "onnx"
# made from the fp32 graph before its channels were padded (cnnx.export.fold.pad_channels): its kernels
# keep plain NCHW, where the zero filters are only extra work
UNPADDED = True
SELFCHECK = True  # the self-check travels in rt_info


def missing() -> str | None:
    """Why this format cannot be made here, or None."""
    try:
        import openvino  # noqa: F401
    except ImportError as exc:
        return f"openvino is not installed ({first_line(exc)}): {INSTALL}"
    return None


def _save(model: Any, spec: ModelSpec, path: Path, selfcheck: str | None) -> Path:
    """``model`` with ``spec`` (and ``selfcheck``) in its rt_info as ``path`` + its .bin, both replaced at once."""
    import openvino as ov

    model.set_rt_info(json.dumps(spec.to_dict(), sort_keys=True), RT_SPEC)
    if selfcheck is not None:
        model.set_rt_info(selfcheck, RT_SELFCHECK)
    with tempfile.TemporaryDirectory(prefix=".cnnx-openvino-", dir=path.parent) as tmp:
        staged = Path(tmp) / path.name
        with signals_held():
            ov.save_model(model, str(staged), compress_to_fp16=False)
        os.replace(staged.with_suffix(".bin"), path.with_suffix(".bin"))
        os.replace(staged, path)
    return path


def export(model: nn.Module, spec: ModelSpec, path: Path, *, built: dict[str, Path] | None = None, **_: Any) -> Path:
    """Convert the fp32 ONNX file in ``built["onnx"]`` to OpenVINO IR at ``path`` (.xml) and its .bin."""
    source = (built or {}).get(REQUIRES)
    if source is None:
        raise ModelFileError("OpenVINO conversion needs the fp32 ONNX export")
    import onnx
    import openvino as ov

    try:
        with signals_held():
            converted = ov.convert_model(str(source))
    except Exception as exc:  # the converter raises its own error types
        raise ModelFileError(f"openvino.convert_model failed: {first_line(exc)[:300]}") from None
    made = {Extra.FORMAT: "openvino", Extra.PRECISION: "fp32"}
    made_spec = made_from(spec, onnx.load(str(source)), made, openvino=ov.__version__.split("-")[0])
    return _save(converted, made_spec, path, None)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class LoadedOpenVino:
    """An IR file loaded back with the OpenVINO runtime on the CPU, as ``cnnx infer`` opens it."""

    def __init__(self, path: Path, threads: int) -> None:
        self.path = Path(path)
        self.threads = threads
        self.model, self._run = open_openvino(self.path, threads)  # as `cnnx infer` opens it

    def run(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._run(np.ascontiguousarray(x, np.float32)), dtype=np.float32)

    def signature(self) -> dict[str, Any]:
        def describe(ports: Any) -> list[dict[str, Any]]:
            return [
                {
                    "name": sorted(p.get_names())[0] if p.get_names() else "",
                    "shape": [d.get_length() if d.is_static else BATCH_AXIS for d in p.get_partial_shape()],
                    "type": "tensor(float)" if p.get_element_type().get_type_name() == "f32" else str(p),
                }
                for p in ports
            ]

        return {"inputs": describe(self.model.inputs), "outputs": describe(self.model.outputs)}

    def spec(self) -> ModelSpec:
        return ModelSpec.from_dict(json.loads(self.model.get_rt_info(RT_SPEC).astype(str)))

    def write_spec(self, spec: ModelSpec, selfcheck: str | None = None) -> Path:
        """Save the checked model again with ``spec`` (and ``selfcheck``); its weights must stay byte for byte."""
        weights = _sha(self.path.with_suffix(".bin"))
        _save(self.model, spec, self.path, selfcheck)
        if _sha(self.path.with_suffix(".bin")) != weights:
            raise ModelFileError(f"rewriting the metadata of {self.path.name} changed its weights")
        self.model, self._run = open_openvino(self.path, self.threads)
        return self.path


def load(path: Path, threads: int) -> LoadedOpenVino:
    return LoadedOpenVino(path, threads)
