"""INT8 export: static QDQ quantisation of the fp32 ONNX file with onnxruntime's tools.

Steps: ``quant_pre_process`` (shape inference, graph optimisation: the form the
quantiser expects), then ``quantize_static`` with ranges calibrated (min/max) on a
few hundred training images, weights int8 per output channel (Conv and Gemm
weights differ by an order of magnitude between channels; one scale for all
wastes most of the 8 bits) and activations uint8, the pair onnxruntime's CPU
kernels run fastest. Per-tensor weights are the fallback when per-channel misses
the gate. Dynamic quantisation is not offered: it re-measures activation ranges on
every call and is several times slower than fp32 for small conv nets.

The result is an ordinary ONNX file with the same input/output contract; its
spec's extra says precision "int8" (``Extra.PRECISION``) and how it was quantised.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)
from torch import nn

from cnnx.core.contract import INPUT_NAME, first_line
from cnnx.core.errors import ModelFileError
from cnnx.core.spec import Extra, ModelSpec
from cnnx.export.formats import onnx_fp32 as onnx_format

SUFFIX = ".int8.onnx"
METHODS = ("per-channel", "per-tensor")  # tried in this order until one passes the int8 gate
SELFCHECK = True  # the file carries a self-check (cnnx.core.selfcheck) for `cnnx verify`
REQUIRES = "onnx"  # quantises the fp32 file that format wrote
CALIBRATION_BATCH = 50  # images per calibration run: (50, C, H, W)


class _Images(CalibrationDataReader):
    """Feeds the calibration images to onnxruntime's calibrator, one batch per call."""

    def __init__(self, images: np.ndarray) -> None:
        self.batches = [images[i : i + CALIBRATION_BATCH] for i in range(0, len(images), CALIBRATION_BATCH)]
        self.rewind()

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._it, None)
        return None if batch is None else {INPUT_NAME: batch}

    def rewind(self) -> None:
        self._it = iter(self.batches)


def _quantise(source: Path, calibration: np.ndarray, method: str, work: Path) -> onnx.ModelProto:
    """The QDQ int8 graph of the fp32 file ``source``, made in the folder ``work``; ModelFileError if it cannot be."""
    root = logging.getLogger()
    level = root.level
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root.setLevel(logging.ERROR)  # the quantiser logs advice at WARNING on the root logger
        try:
            pre, out = work / "pre.onnx", work / "int8.onnx"
            quant_pre_process(str(source), str(pre))
            quantize_static(
                str(pre),
                str(out),
                _Images(calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=method == "per-channel",
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
            return onnx.load(str(out))
        except Exception as exc:  # the quantiser raises assorted errors for graphs it cannot handle
            first = first_line(exc)
            raise ModelFileError(f"onnxruntime quantisation ({method}) failed: {first[:300]}") from None
        finally:
            root.setLevel(level)


def _int8_spec(spec: ModelSpec, fp32: onnx.ModelProto, proto: onnx.ModelProto, method: str, images: int) -> ModelSpec:
    """``spec`` as the int8 file carries it: the fp32 file's versions and exporter, and how it was quantised."""
    made = {
        Extra.FORMAT: "onnx",
        Extra.PRECISION: "int8",
        Extra.OPSET: onnx_format.opset_of(proto),
        Extra.QUANTIZATION: {
            "format": "QDQ",
            "weights": f"int8 {method}",
            "activations": "uint8",
            "calibration": "minmax",
            "calibration_images": images,
        },
    }
    return onnx_format.made_from(spec, fp32, made)


def export(
    model: nn.Module,
    spec: ModelSpec,
    path: Path,
    *,
    method: str = "per-channel",
    built: dict[str, Path] | None = None,
    calibration: np.ndarray | None = None,
    **_: Any,
) -> Path:
    """Quantise the fp32 ONNX file in ``built["onnx"]`` into ``path``, calibrated on ``calibration``.

    ``calibration``: (M, C, H, W) float32 normalised training images.
    """
    source = (built or {}).get(REQUIRES)
    if source is None or calibration is None or not len(calibration):
        raise ModelFileError("int8 quantisation needs the fp32 ONNX export and calibration images")
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix=".cnnx-int8-", dir=path.parent) as tmp:
        proto = _quantise(Path(source), calibration, method, Path(tmp))
    onnx_format.name_batch_axis(proto)
    int8 = _int8_spec(spec, onnx.load(str(source)), proto, method, len(calibration))
    return onnx_format.write_model(proto, int8, path)


load = onnx_format.load
