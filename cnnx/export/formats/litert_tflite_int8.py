"""Full-integer TFLite export: int8 weights and activations, int8 input and output tensors (what TensorFlow
Lite Micro runs), made from the torch module and calibrated on real training images.

Steps: the eval-mode module, each ``BatchNorm2d`` written as the per-channel affine it computes
(``x * scale + shift``: two elementwise ops where the converter emits four, so two fewer int8
rescalings; exact in float), converted by ``litert-torch`` as the fp32 file is (``litert_tflite``);
then ``ai-edge-quantizer``'s static int8 recipe on that flatbuffer, with activation ranges
calibrated (true min/max over every image, as ``onnx_int8`` calibrates; the quantizer's default,
a moving average, clips the largest logits) on a few hundred training images, weights int8 per
output channel. Per-tensor weights are the fallback when per-channel misses the gate.

Measured on the default MNIST checkpoint against the other way, litert-torch's own PT2E
quantisation (``QuantConfig(pt2e_quantizer=...)``, which works with torch 2.14): PT2E leaves each
BatchNorm that follows a pool as float ops between DEQUANTIZE and QUANTIZE, so its file is not
full-integer, and it takes four times as long; this way every op is int8.

The file's input and output are int8 with their own scale and zero point; ``cnnx.core.tfliteio``
quantises the normalised float input and dequantises the logits, so every command runs it like
the fp32 file. Its batch axis is made resizable as the fp32 file's is (after quantisation: the
calibrator runs the converted batch of one). Its spec (``Extra.PRECISION`` "int8", how it was
quantised) and self-check travel in the flatbuffer's metadata, as the fp32 file's do. Needs the
litert extra, as the fp32 format.
"""

from __future__ import annotations

import contextlib
import copy
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnx.core.contract import first_line
from cnnx.core.errors import ModelFileError
from cnnx.core.fileio import atomic_write
from cnnx.core.quiet import native_stderr_held
from cnnx.core.spec import Extra, ModelSpec
from cnnx.core.tfliteio import SPEC_KEY, with_metadata
from cnnx.export.formats import litert_tflite as fp32_format

SUFFIX = ".int8.tflite"
METHODS = ("per-channel", "per-tensor")  # weight granularity, tried in this order until one passes the gate
REQUIRES = "tflite"  # the fp32 file: the gate's baseline for accuracy, agreement and size
SELFCHECK = True  # the self-check travels in the metadata table, beside the spec
BATCH = fp32_format.BATCH  # images per calibration call (the converted file's batch)
_MODULE = re.compile(r"^(?:[a-z_]\w*\.)+(?=[A-Z_])")  # the module a layer's class is defined in, in a tensor's name


def missing() -> str | None:
    """Why this format cannot be made here, or None."""
    why = fp32_format.missing()
    if why:
        return why
    try:
        with fp32_format.quiet(), native_stderr_held():
            import ai_edge_quantizer.quantizer  # noqa: F401
    except Exception as exc:
        return f"ai-edge-quantizer does not load ({first_line(exc)[:200]}): {fp32_format.INSTALL}"
    return None


class _Affine(nn.Module):
    """An eval-mode ``BatchNorm2d`` as the per-channel affine it computes: (N, C, H, W) -> x * scale + shift."""

    scale: torch.Tensor  # (1, C, 1, 1)
    shift: torch.Tensor  # (1, C, 1, 1)

    def __init__(self, bn: nn.BatchNorm2d) -> None:
        super().__init__()
        assert bn.running_mean is not None and bn.running_var is not None
        scale = torch.rsqrt(bn.running_var + bn.eps)
        weight = bn.weight.detach() if bn.weight is not None else torch.ones_like(scale)
        bias = bn.bias.detach() if bn.bias is not None else torch.zeros_like(scale)
        scale = weight * scale
        self.register_buffer("scale", scale.reshape(1, -1, 1, 1))
        self.register_buffer("shift", (bias - bn.running_mean * scale).reshape(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


def _affine_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval mode) with every BatchNorm2d that keeps running statistics as ``_Affine``."""
    out = copy.deepcopy(model).eval()
    for parent in list(out.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.BatchNorm2d) and child.running_mean is not None:
                setattr(parent, name, _Affine(child))
    return out


def _calibrated(fp32: bytes, calibration: np.ndarray, recipe: Any) -> dict[str, Any]:
    """Every tensor's min and max over the calibration images, run ``BATCH`` at a time by LiteRT."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import calibrator, recipe_manager
    from ai_edge_quantizer.utils import qsv_utils

    with native_stderr_held():
        signatures = Interpreter(model_content=fp32).get_signature_list()
    (key, names), *more = signatures.items()
    if more or len(names["inputs"]) != 1:
        raise ModelFileError(f"the converted file has signatures {signatures}; cnnx quantises one input")
    feed = [{names["inputs"][0]: calibration[i : i + BATCH]} for i in range(0, len(calibration) - BATCH + 1, BATCH)]
    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(recipe)
    calib = calibrator.Calibrator(fp32, num_threads=1, qsv_update_func=qsv_utils.min_max_update)
    calib.calibrate({key: feed}, manager)
    return dict(calib.get_model_qsvs())


def _quantised(model: nn.Module, spec: ModelSpec, calibration: np.ndarray, method: str) -> bytes:
    """The full-integer flatbuffer of ``model``; ModelFileError if it cannot be made."""
    from ai_edge_quantizer import qtyping, quantizer, recipe_manager

    fp32 = fp32_format.flatbuffer(_affine_batchnorm(model), spec)
    granularity = qtyping.QuantGranularity
    per = granularity.CHANNELWISE if method == "per-channel" else granularity.TENSORWISE
    manager = recipe_manager.RecipeManager()
    manager.add_static_config(".*", qtyping.TFLOperationName.ALL_SUPPORTED, 8, 8, per)
    recipe = manager.get_quantization_recipe()
    # the calibrator draws a progress bar and the quantizer prints a report: none is cnnx's output
    held = contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO())
    with fp32_format.quiet(), native_stderr_held(), held[0], held[1]:
        ranges = _calibrated(fp32, calibration, recipe)
        q = quantizer.Quantizer(fp32, recipe)
        return bytes(q.quantize(ranges, enable_progress_report=False).quantized_model)


def short_name(name: str) -> str:
    """A tensor's name as the int8 file keeps it: for each op fused into it, the layer's class and where it
    sits, without the path to it or the module its class is defined in:
    ``cnnx...MnistBN/torch.nn.modules.container.Sequential_features/torch.nn.modules.conv.Conv2d_features.0``
    -> ``Conv2d_features.0``. The converter's full names take 4 KB of a 95 KB file, which a microcontroller
    keeps in flash."""
    return ";".join(_MODULE.sub("", part.rsplit("/", 1)[-1]) for part in name.split(";"))


def export(
    model: nn.Module,
    spec: ModelSpec,
    path: Path,
    *,
    method: str = "per-channel",
    calibration: np.ndarray | None = None,
    **_: Any,
) -> Path:
    """Write ``model`` as a full-integer int8 ``.tflite`` at ``path``, calibrated on ``calibration``.

    ``calibration``: (M, C, H, W) float32 normalised training images, M >= ``BATCH``.
    """
    if calibration is None or len(calibration) < BATCH:
        raise ModelFileError("int8 quantisation needs calibration images")
    try:
        data = _quantised(model, spec, np.ascontiguousarray(calibration, np.float32), method)
    except ModelFileError:
        raise
    except Exception as exc:  # torch.export, the lowering and the quantizer raise errors of many types
        raise ModelFileError(f"TFLite int8 quantisation ({method}) failed: {first_line(exc)[:300]}") from None
    made = {
        Extra.FORMAT: "tflite",
        Extra.PRECISION: "int8",
        Extra.QUANTIZATION: {
            "format": "full-integer",
            "weights": f"int8 {method}",
            "activations": "int8",
            "input_output": "int8",
            "calibration": "minmax",
            "calibration_images": len(calibration) // BATCH * BATCH,
        },
    }
    versions = {
        **spec.versions,
        "litert-torch": fp32_format.dist_version("litert-torch"),
        "ai-edge-quantizer": fp32_format.dist_version("ai-edge-quantizer"),
    }
    full = spec.replace(versions=versions, extra={**spec.extra, **made})
    data = with_metadata(data, {SPEC_KEY: fp32_format.spec_bytes(full)}, path, rename=short_name, free_batch=True)
    atomic_write(path, lambda f: f.write(data))
    return path


load = fp32_format.load
