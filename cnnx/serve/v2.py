"""The Open Inference Protocol (KServe v2) over REST: model metadata, and tensors in, scores out.

A request carries one input, the model's own: FP32, shape [n, C, H, W] with (C, H, W) the
spec's input shape, already normalised (``cnnx.core.contract.normalise``), ``data`` flat
in row-major order (nested lists are accepted too). The answer has two outputs, ``logits``
and ``probabilities`` (softmax of the logits over the spec's calibration temperature), each
FP32 [n, num_classes]; ``outputs`` in the request picks among them.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

import cnnx
from cnnx.core.calibration import softmax
from cnnx.runtime.openvino_model import OpenVinoModel
from cnnx.runtime.tflite_model import TfliteModel
from cnnx.serve.errors import RequestError, bad
from cnnx.serve.models import Model

OUTPUTS = ("logits", "probabilities")
PLATFORM = "onnxruntime_onnx"  # .onnx and .ort files; OpenVINO IR files: "openvino", as Triton names them
TFLITE_PLATFORM = "tflite"  # .tflite files: no platform name of Triton's fits, so the format's own name


def server_metadata() -> dict[str, Any]:
    return {"name": "cnnx", "version": cnnx.__version__, "extensions": ["model_repository"]}


def model_metadata(model: Model) -> dict[str, Any]:
    clf = model.classifier
    spec, k = clf.spec, clf.spec.num_classes
    return {
        "name": model.name,
        "versions": [str(model.version)],
        "platform": _platform(clf.model),
        "inputs": [{"name": clf.model.input_name, "datatype": "FP32", "shape": [-1, *spec.input_shape]}],
        "outputs": [{"name": name, "datatype": "FP32", "shape": [-1, k]} for name in OUTPUTS],
        "parameters": {"classes": spec.classes, "preprocess": spec.preprocess, "spec": spec.to_dict()},
    }


def _platform(model: Any) -> str:
    if isinstance(model, OpenVinoModel):
        return "openvino"
    return TFLITE_PLATFORM if isinstance(model, TfliteModel) else PLATFORM


def _field(obj: dict, key: str, kind: type, where: str) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise bad(f"{where}.{key} must be a {kind.__name__}, got {type(value).__name__}")
    return value


def parse_infer(body: bytes, model: Model, max_images: int) -> tuple[np.ndarray, list[str], str | None]:
    """A v2 infer request -> (float32 (n, C, H, W) input, the outputs wanted, the request id)."""
    try:
        request = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise bad(f"the body is not JSON: {str(exc)[:200]}", "send an inference request as application/json") from None
    if not isinstance(request, dict):
        raise bad(f"the request must be a JSON object, got {type(request).__name__}")
    inputs = _field(request, "inputs", list, "request")
    clf = model.classifier
    if len(inputs) != 1:
        raise bad(f"the request has {len(inputs)} inputs; model {model.name!r} takes one, {clf.model.input_name!r}")
    if not isinstance(inputs[0], dict):
        raise bad(
            f"request.inputs[0] must be an object, got {type(inputs[0]).__name__}",
            f'give {{"name": "{clf.model.input_name}", "datatype": "FP32", "shape": [...], "data": [...]}}',
        )
    tensor = _tensor(inputs[0], clf.model.input_name, clf.spec.input_shape, max_images)
    wanted = request.get("outputs") or [{"name": n} for n in OUTPUTS]
    if not isinstance(wanted, list) or not all(isinstance(o, dict) for o in wanted):
        raise bad('request.outputs must be a list of {"name": ...} objects')
    names = [o.get("name") for o in wanted]
    unknown = [n for n in names if n not in OUTPUTS]
    if unknown:
        raise bad(f"unknown output {str(unknown[0])[:60]!r}", f"this model gives {', '.join(OUTPUTS)}")
    rid = request.get("id")
    return tensor, names, None if rid is None else str(rid)[:200]


def _tensor(spec: dict, name: str, shape: tuple[int, int, int], max_images: int) -> np.ndarray:
    if spec.get("name") != name:
        raise bad(f"input {str(spec.get('name'))[:60]!r} is not this model's", f"its input is {name!r}")
    dtype = spec.get("datatype")
    if dtype != "FP32":
        raise bad(f"input datatype {str(dtype)[:20]!r} is not FP32", "send float32 values, normalised as the spec says")
    dims = _field(spec, "shape", list, "input")
    want = [-1, *shape]
    if len(dims) != 4 or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims) or dims[1:] != want[1:]:
        raise bad(f"input shape {str(dims)[:80]} is not [n, {', '.join(map(str, shape))}]")
    if not 1 <= dims[0] <= max_images:
        raise RequestError(413 if dims[0] > max_images else 400, f"batch of {dims[0]}; give 1 to {max_images}")
    data = _field(spec, "data", list, "input")
    numbers = "input data must be numbers (a flat list, or nested lists of one shape)"
    if not _only_numbers(data):
        raise bad(numbers, "true, false and strings are not numbers")
    try:
        values = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise bad(numbers) from None
    if values.size != math.prod(dims):
        raise bad(f"input data holds {values.size} values; shape {dims} needs {math.prod(dims)}")
    with np.errstate(over="ignore"):  # beyond float32's range: inf, refused below (not a warning in the log)
        x = values.reshape(dims).astype(np.float32)
    if not np.isfinite(x).all():  # JSON null arrives as NaN
        raise bad("input data holds null, NaN or infinite values (or values beyond float32's range)")
    return x


_NUMBERS = {int, float, type(None)}  # null: refused later, by name, with NaN


def _only_numbers(data: list) -> bool:
    """Whether the nested lists ``data`` hold only JSON numbers: numpy would read true as 1.0 and "2" as 2.0.
    A type check per value (a few ms for the largest tensor a request may carry, far less than its JSON)."""
    lists = [data]
    while lists:
        items = lists.pop()
        kinds = set(map(type, items))
        if list in kinds:
            kinds.discard(list)
            lists.extend(v for v in items if type(v) is list)
        if not kinds <= _NUMBERS:
            return False
    return True


def infer_response(model: Model, logits: np.ndarray, names: list[str], rid: str | None) -> dict[str, Any]:
    """The v2 answer for (n, K) logits."""
    # probabilities as /predict gives them: calibrated by the model file's temperature
    probs = softmax(logits, model.classifier.temperature) if "probabilities" in names else None
    arrays = {"logits": logits, "probabilities": probs}
    answer: dict[str, Any] = {"model_name": model.name, "model_version": str(model.version)}
    if rid is not None:
        answer["id"] = rid
    answer["outputs"] = [
        {"name": n, "datatype": "FP32", "shape": list(logits.shape), "data": arrays[n].ravel().tolist()}  # type: ignore[union-attr]
        for n in names
    ]
    return answer
