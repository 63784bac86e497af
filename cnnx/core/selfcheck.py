"""The self-check a model file carries: a few real test images and the checkpoint's logits for them.

Export writes it into every ONNX-family file (one ``metadata_props`` entry, ``KEY``, beside the
spec, not part of it); ``cnnx verify`` reads it back on a device, runs the images through that
device's runtime and compares. The images are stored as the model's preprocessed input in
uint8 pixels (what ``normalise`` turns into the model's input, bit for bit on every machine),
so a device needs neither the dataset nor Pillow to check itself.

The value is one JSON object, small enough to travel in the file (about 4 KB for 8 MNIST digits):

    {"version": 1, "format": "onnx", "atol": 0.0001,
     "shape": [8, 1, 28, 28], "pixels": base64(zlib(uint8 C-order bytes)),
     "logits": base64(float32 little-endian (8, K) bytes),
     "expected": the same, present only where it differs from "logits"}

``logits`` are the checkpoint's. ``expected`` is what a device must compute, within ``atol``
(the format's tolerance, taken from export's gate table when the file was made), and with the
same top-1 class on every image: the checkpoint's logits for fp32 formats, and for formats
gated on decisions (int8, fp16), whose logits stand a quantisation step away from the
checkpoint's, the file's own logits on the exporting machine.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from dataclasses import dataclass

import numpy as np

from cnnx.core.errors import ModelFileError

KEY = "cnnx_selfcheck"  # the metadata key; no "cnnx." prefix, so it is not read as a spec field
VERSION = 1
IMAGES = 8  # test images a file carries
_MAX_VALUES = 1 << 24  # a hostile file must not make the reader allocate more than 16 M pixels


@dataclass(frozen=True)
class SelfCheck:
    """Images, the checkpoint's logits for them, and the tolerance the file's format was gated with."""

    pixels: np.ndarray  # (N, C, H, W) uint8, the model's input before normalisation
    logits: np.ndarray  # (N, K) float32, the checkpoint's logits on normalise(pixels)
    atol: float  # max |logit - expected logit| a runtime may give
    format: str  # the export format the tolerance belongs to, e.g. "onnx"
    expected: np.ndarray | None = None  # (N, K) float32 a runtime must give; None: ``logits``

    @property
    def target(self) -> np.ndarray:
        """(N, K) float32: what a runtime must compute, within ``atol``."""
        return self.logits if self.expected is None else self.expected

    def encode(self) -> str:
        pixels = np.ascontiguousarray(self.pixels, dtype=np.uint8)
        data = {
            "version": VERSION,
            "format": self.format,
            "atol": self.atol,
            "shape": list(pixels.shape),
            "pixels": base64.b64encode(zlib.compress(pixels.tobytes(), 9)).decode("ascii"),
            "logits": _floats(self.logits),
        }
        if self.expected is not None:
            data["expected"] = _floats(self.expected)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def decode(cls, text: str) -> SelfCheck:
        """Inverse of ``encode``; ModelFileError naming what is wrong for anything else."""
        try:
            data = json.loads(text)
            shape = tuple(int(d) for d in data["shape"])
            if len(shape) != 4 or min(shape) < 1 or int(np.prod(shape)) > _MAX_VALUES:
                raise ValueError(f"image shape {list(shape)}")
            raw = zlib.decompressobj().decompress(base64.b64decode(data["pixels"], validate=True), _MAX_VALUES + 1)
            pixels = np.frombuffer(raw, dtype=np.uint8).reshape(shape)
            logits = _array(data["logits"], shape[0])
            expected = _array(data["expected"], shape[0]) if "expected" in data else None
            atol = float(data["atol"])
            if int(data["version"]) != VERSION or not logits.shape[1] or not np.isfinite(atol) or atol < 0:
                raise ValueError(f"version {data['version']}, atol {atol}, logits {logits.shape}")
            if expected is not None and expected.shape != logits.shape:
                raise ValueError(f"expected logits {expected.shape}, checkpoint logits {logits.shape}")
            return cls(pixels=pixels, logits=logits, atol=atol, format=str(data["format"]), expected=expected)
        except (ValueError, KeyError, TypeError, binascii.Error, zlib.error) as exc:
            raise ModelFileError(
                f"the self-check the model carries ({KEY}) is unreadable: {exc}",
                "re-export the model with `cnnx export`",
            ) from None


def _floats(values: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(values, dtype="<f4").tobytes()).decode("ascii")


def _array(text: str, rows: int) -> np.ndarray:
    """(rows, K) float32 from ``_floats``'s text; ValueError when it does not split into ``rows`` rows."""
    return np.frombuffer(base64.b64decode(text, validate=True), dtype="<f4").reshape(rows, -1).astype(np.float32)
