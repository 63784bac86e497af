"""The int8 TFLite loader's edges, in numpy alone: how float inputs are quantised for an integer input
tensor and integer outputs read back (no LiteRT needed: the interpreter only ever sees the result)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cnnx.core.errors import ModelFileError
from cnnx.core.tfliteio import _dequantiser, _quantiser

WHERE = Path("m.int8.tflite")


def test_inputs_are_rounded_half_away_from_zero_as_tflite_does() -> None:
    q = _quantiser({"dtype": np.int8, "quantization": (0.5, -3)}, WHERE)
    x = np.array([0.0, 0.25, -0.25, 0.24999999, 0.74, 1.0, -1.0], np.float32)
    assert q(x).dtype == np.int8
    assert q(x).tolist() == [-3, -2, -4, -3, -2, -1, -5]  # x / 0.5 rounded (0.5 -> 1, -0.5 -> -1), + zero point
    tiny = _quantiser({"dtype": np.int8, "quantization": (1.0, 0)}, WHERE)
    assert tiny(np.array([0.49999997, -0.49999997], np.float32)).tolist() == [0, 0]  # not a step up


def test_inputs_beyond_the_range_are_clipped_not_wrapped() -> None:
    q8 = _quantiser({"dtype": np.int8, "quantization": (0.1, 0)}, WHERE)
    assert q8(np.array([100.0, -100.0], np.float32)).tolist() == [127, -128]
    u8 = _quantiser({"dtype": np.uint8, "quantization": (0.1, 128)}, WHERE)
    assert u8(np.array([100.0, -100.0, 0.0], np.float32)).tolist() == [255, 0, 128]


def test_outputs_are_read_back_with_their_scale_and_zero_point() -> None:
    d = _dequantiser({"dtype": np.int8, "quantization": (0.25, 10)}, WHERE)
    y = d(np.array([[10, 14, -128]], np.int8))
    assert y.dtype == np.float32 and y.tolist() == [[0.0, 1.0, -34.5]]
    same = _dequantiser({"dtype": np.float32, "quantization": (0.0, 0)}, WHERE)
    buffer = np.ones(3, np.float32)
    out = same(buffer)
    buffer[:] = 7  # the interpreter reuses its buffer on the next call: what was read stays
    assert out.tolist() == [1.0, 1.0, 1.0]


def test_an_integer_tensor_without_a_scale_is_a_model_file_error() -> None:
    with pytest.raises(ModelFileError, match="without a scale"):
        _quantiser({"dtype": np.int8, "quantization": (0.0, 0)}, WHERE)
    with pytest.raises(ModelFileError, match="without a scale"):
        _dequantiser({"dtype": np.int16, "quantization": (0.0, 0)}, WHERE)
