"""The model spec: everything a consumer needs to use a trained model correctly.

Training writes it into the checkpoint, export copies it into the ONNX
``metadata_props`` and the TorchScript extra files, and the runtime reads it
back. Nothing downstream of training hard-codes a mean, a size or a class list.

Stdlib only: the edge runtime imports this module.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from cnnx.errors import ModelFileError

SPEC_VERSION = 1
# Key prefix inside ONNX metadata_props; every value is a JSON string.
ONNX_PREFIX = "cnnx."

# The preprocessing recipes the runtime knows (cnnx.runtime.image implements them).
RECIPES = {
    "mnist-digit": "find the ink (light-on-dark, inverting if needed), crop to it, "
    "fit into 20x20 keeping aspect, centre by mass in 28x28",
    "resize": "convert to the colour mode and resize to the input size",
}


@dataclass
class ModelSpec:
    """What a trained model expects and where it came from."""

    arch: str  # registry name of the architecture, e.g. "mnist-bn"
    input_shape: tuple[int, int, int]  # (C, H, W) of one image
    color: str  # Pillow mode the image is converted to: "L" or "RGB"
    mean: tuple[float, ...]  # per-channel mean of pixels scaled to [0, 1]
    std: tuple[float, ...]  # per-channel std of pixels scaled to [0, 1]
    classes: list[str]  # class names, index = model output position
    preprocess: str = "resize"  # recipe name, a key of RECIPES
    dataset: str = ""  # what it was trained on, e.g. "mnist"
    test_accuracy: float | None = None  # fraction in [0, 1] on the dataset's test split
    versions: dict[str, str] = field(default_factory=dict)  # cnnx / torch / onnx versions
    checkpoint_sha256: str | None = None  # of the checkpoint an export was made from
    extra: dict[str, Any] = field(default_factory=dict)  # opset, parity results, ...

    def __post_init__(self) -> None:
        self.input_shape = tuple(int(v) for v in self.input_shape)  # type: ignore[assignment]
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        self.classes = [str(c) for c in self.classes]
        if len(self.input_shape) != 3:
            raise ModelFileError(f"input_shape must be (C, H, W), got {self.input_shape}")
        channels = self.input_shape[0]
        if len(self.mean) != channels or len(self.std) != channels:
            raise ModelFileError(
                f"mean {self.mean} and std {self.std} need one value per channel ({channels})"
            )
        if any(s <= 0 for s in self.std):
            raise ModelFileError(f"std must be positive, got {self.std}")
        if self.preprocess not in RECIPES:
            raise ModelFileError(
                f"unknown preprocessing recipe {self.preprocess!r}",
                f"known: {', '.join(RECIPES)}",
            )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        d["spec_version"] = SPEC_VERSION
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        missing = {"arch", "input_shape", "color", "mean", "std", "classes"} - data.keys()
        if missing:
            raise ModelFileError(f"model spec lacks {', '.join(sorted(missing))}")
        return cls(**{k: v for k, v in data.items() if k in names})

    def replace(self, **changes: Any) -> ModelSpec:
        return dataclasses.replace(self, **changes)

    def to_onnx_metadata(self) -> dict[str, str]:
        """One ``cnnx.<field>`` key per field, each value a JSON string."""
        return {ONNX_PREFIX + k: json.dumps(v, sort_keys=True) for k, v in self.to_dict().items()}

    @classmethod
    def from_onnx_metadata(cls, props: dict[str, str]) -> ModelSpec:
        """Inverse of ``to_onnx_metadata``; values are parsed as JSON, never evaluated."""
        data: dict[str, Any] = {}
        for key, raw in props.items():
            if not key.startswith(ONNX_PREFIX):
                continue
            try:
                data[key[len(ONNX_PREFIX):]] = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ModelFileError(f"metadata {key!r} is not valid JSON: {exc}") from None
        if not data:
            raise ModelFileError(
                "the model file carries no cnnx spec",
                "export it with `cnnx export`, or give --mean/--std/--size",
            )
        return cls.from_dict(data)
