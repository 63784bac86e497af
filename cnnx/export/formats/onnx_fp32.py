"""ONNX export: one self-contained ``.onnx`` file that carries its model spec.

Contract the runtime relies on: input ``input``, float32 (N, C, H, W), already
normalised, batch axis dynamic and named ``batch``; output ``logits``
(N, num_classes) float32; the spec in ``metadata_props`` as ``cnnx.<field>``
JSON strings (ModelSpec.to_onnx_metadata).

``torch.onnx.export``'s dynamo exporter is tried first; the TorchScript-based
("legacy") exporter is the fallback, and which one made the file is recorded
in the spec (``Extra.EXPORTER``).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from cnnx.core.contract import BATCH_AXIS, INPUT_NAME, OUTPUT_NAME, first_line
from cnnx.core.errors import ModelFileError
from cnnx.core.fileio import atomic_write
from cnnx.core.onnxio import open_session
from cnnx.core.selfcheck import KEY as SELFCHECK_KEY
from cnnx.core.spec import ONNX_PREFIX, Extra, ModelSpec

SUFFIX = ".onnx"
METHODS = ("dynamo", "legacy")  # tried in this order until one passes the parity gate
SELFCHECK = True  # the file carries a self-check (cnnx.core.selfcheck) for `cnnx verify`
# made from the module with its BatchNorms folded into the convolutions (cnnx.export.fold), which no
# runtime does across a pool; the files made from this one (int8, fp16, ort, OpenVINO) inherit it.
# TorchScript, ExecuTorch and TFLite are made from the checkpoint's module as it is.
FOLD = True
# 18: the opset torch's dynamo exporter implements natively (no version conversion) and
# onnxruntime has run since 1.14, so older edge installs load the file too.
DEFAULT_OPSET = 18
# onnxruntime 1.17, the oldest cnnx's base install allows, reads IR version 9 at most; torch writes
# 10 whatever the opset. Files are written at the lowest IR version their opsets allow (8 for
# opset 18), so every onnxruntime that runs the opset loads them (.ci/old_runtime checks 1.17).
_MAX_PROTO = 2**31 - 1  # protobuf's limit; larger models would need external data


def _dynamo(model: nn.Module, example: torch.Tensor, opset: int) -> onnx.ModelProto:
    program = torch.onnx.export(
        model,
        (example,),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        opset_version=opset,
        dynamic_shapes=({0: torch.export.Dim(BATCH_AXIS)},),
        dynamo=True,
        optimize=True,
        verbose=False,
    )
    if program is None:  # torch returns None only when given a file to write, which this call does not
        raise ModelFileError("the dynamo ONNX exporter returned no program")
    return program.model_proto


def _legacy(model: nn.Module, example: torch.Tensor, opset: int) -> onnx.ModelProto:
    buf = io.BytesIO()
    torch.onnx.export(
        model,
        (example,),
        buf,  # type: ignore[arg-type]  # the legacy exporter writes to any binary file object
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        opset_version=opset,
        dynamic_axes={INPUT_NAME: {0: BATCH_AXIS}, OUTPUT_NAME: {0: BATCH_AXIS}},
        dynamo=False,
    )
    return onnx.load_from_string(buf.getvalue())


_EXPORTERS: dict[str, Callable[[nn.Module, torch.Tensor, int], onnx.ModelProto]] = {
    "dynamo": _dynamo,
    "legacy": _legacy,
}


def name_batch_axis(proto: onnx.ModelProto) -> None:
    """Give the first axis of the input and output the symbolic name ``batch`` whatever the exporter chose."""
    for value in (*proto.graph.input, *proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_param = BATCH_AXIS


def made_from(spec: ModelSpec, fp32: onnx.ModelProto, made: dict[str, Any], **versions: str) -> ModelSpec:
    """The spec of a file made from the fp32 ONNX file ``fp32``: ``spec`` with that file's versions (and
    ``versions``, the converter's) and how its graph was made (exporter, BatchNorms folded, channels
    padded), plus ``made`` (format, precision...)."""
    source = ModelSpec.from_onnx_metadata({p.key: p.value for p in fp32.metadata_props})
    graph = {
        k: v for k, v in source.extra.items() if k in (Extra.EXPORTER, Extra.FOLDED, Extra.PADDED)
    }  # how the graph was made
    return spec.replace(versions={**source.versions, **versions}, extra={**spec.extra, **graph, **made})


def opset_of(proto: onnx.ModelProto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def strip_debug_info(proto: onnx.ModelProto) -> None:
    """Drop per-node doc strings and metadata (the dynamo exporter's stack traces, FX node dumps).

    They hold source paths of the exporting machine and, for a small CNN, over 5% of the file.
    """
    for node in proto.graph.node:
        node.doc_string = ""
        del node.metadata_props[:]
    proto.graph.doc_string = ""
    del proto.graph.metadata_props[:]


def drop_unused_opsets(proto: onnx.ModelProto) -> None:
    """Remove opset imports of domains no node uses (the default domain stays).

    onnxruntime's quantisation pre-processing imports every domain it knows, ``ai.onnx.ml`` 5
    among them, which onnxruntime before 1.18 refuses to load although no node uses it.
    """
    used = {n.domain or "" for n in proto.graph.node}
    used |= {n.domain or "" for f in proto.functions for n in f.node} | {f.domain for f in proto.functions}
    keep = [o for o in proto.opset_import if (o.domain or "") in used | {"", "ai.onnx"}]
    del proto.opset_import[:]
    proto.opset_import.extend(keep)


def lowest_ir_version(proto: onnx.ModelProto) -> int:
    """The lowest ONNX IR version that holds ``proto``'s opsets (domains onnx does not know are left out)."""
    return int(onnx.helper.find_min_ir_version_for(list(proto.opset_import), ignore_unknown=True))


def write_model(proto: onnx.ModelProto, spec: ModelSpec, path: Path, props: dict[str, str] | None = None) -> Path:
    """Put ``spec`` (and ``props``, other metadata entries, replacing those of the same key) into
    ``metadata_props``, lower the IR version as far as the opsets allow (older runtimes load it; the
    full check below proves the graph needs no more), check the model fully, write it atomically."""
    strip_debug_info(proto)
    drop_unused_opsets(proto)
    proto.ir_version = min(proto.ir_version, lowest_ir_version(proto))
    added = {**spec.to_onnx_metadata(), **(props or {})}
    keep = [p for p in proto.metadata_props if not p.key.startswith(ONNX_PREFIX) and p.key not in added]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for key, value in added.items():
        proto.metadata_props.add(key=key, value=value)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
        raise ModelFileError(
            f"the exported graph for {path.name} keeps weights in external files",
            "cnnx writes single-file models only; report this with the checkpoint",
        )
    if proto.ByteSize() > _MAX_PROTO:
        raise ModelFileError(f"the model is {proto.ByteSize() / 2**30:.1f} GiB; one .onnx file holds at most 2 GiB")
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ModelFileError(f"onnx.checker rejects the exported model: {str(exc).splitlines()[0]}") from None
    data = proto.SerializeToString()
    return atomic_write(path, lambda f: f.write(data))


def export(
    model: nn.Module,
    spec: ModelSpec,
    path: Path,
    *,
    method: str = "dynamo",
    opset: int = DEFAULT_OPSET,
    **_: Any,
) -> Path:
    """Write ``model`` (eval mode, CPU) as ONNX to ``path``; raises ModelFileError if ``method`` cannot."""
    # batch 2, not 1: an example batch of 1 lets exporters specialise the batch axis away
    example = torch.zeros((2, *spec.input_shape), dtype=torch.float32)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            proto = _EXPORTERS[method](model, example, opset)
    except Exception as exc:  # exporters raise anything from torch._dynamo errors to RuntimeError
        first = first_line(exc)
        raise ModelFileError(f"the {method} ONNX exporter failed: {first[:300]}") from None
    name_batch_axis(proto)
    spec = spec.replace(
        versions={**spec.versions, "onnx": onnx.__version__, "onnxruntime": ort.__version__},
        extra={
            **spec.extra,
            Extra.FORMAT: "onnx",
            Extra.PRECISION: "fp32",
            Extra.OPSET: opset_of(proto),
            Extra.EXPORTER: method,
        },
    )
    return write_model(proto, spec, path)


def selfcheck_props(selfcheck: str | None) -> dict[str, str]:
    """The metadata entry that carries an encoded self-check (``cnnx.core.selfcheck``), or none."""
    return {} if selfcheck is None else {SELFCHECK_KEY: selfcheck}


def expected_signature(spec: ModelSpec) -> dict[str, Any]:
    """The inputs/outputs every cnnx ONNX file declares, as ``LoadedOnnx.signature`` reports them."""
    return {
        "inputs": [{"name": INPUT_NAME, "shape": [BATCH_AXIS, *spec.input_shape], "type": "tensor(float)"}],
        "outputs": [{"name": OUTPUT_NAME, "shape": [BATCH_AXIS, spec.num_classes], "type": "tensor(float)"}],
    }


class LoadedOnnx:
    """An exported file loaded back: opened in onnxruntime as the runtime will open it."""

    def __init__(self, path: Path, threads: int) -> None:
        self.path = Path(path)
        self.session = open_session(self.path, threads)  # as `cnnx infer` opens it

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]

    def signature(self) -> dict[str, Any]:
        def describe(values: list[Any]) -> list[dict[str, Any]]:
            return [{"name": v.name, "shape": list(v.shape), "type": v.type} for v in values]

        return {"inputs": describe(self.session.get_inputs()), "outputs": describe(self.session.get_outputs())}

    def spec(self) -> ModelSpec:
        return ModelSpec.from_onnx_metadata(self.session.get_modelmeta().custom_metadata_map)

    def write_spec(self, spec: ModelSpec, selfcheck: str | None = None) -> Path:
        """Rewrite the file with ``spec`` (and ``selfcheck``, when given); the graph is the one that was
        checked, byte for byte."""
        proto = onnx.load(str(self.path))
        graph = proto.graph.SerializeToString()
        write_model(proto, spec, self.path, selfcheck_props(selfcheck))
        if onnx.load(str(self.path)).graph.SerializeToString() != graph:
            raise ModelFileError(f"rewriting the metadata of {self.path.name} changed its graph")
        return self.path


def load(path: Path, threads: int) -> LoadedOnnx:
    return LoadedOnnx(path, threads)
