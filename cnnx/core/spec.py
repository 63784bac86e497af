"""The model spec: everything a consumer needs to use a trained model correctly.

Training writes it into the checkpoint, export copies it into the ONNX
``metadata_props`` and the TorchScript extra files, and the runtime reads it
back. Nothing downstream of training hard-codes a mean, a size or a class list.

Stdlib only: the edge runtime imports this module.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cnnx.core.errors import ConfigError, ModelFileError

SPEC_VERSION = 1
# Key prefix inside ONNX metadata_props; every value is a JSON string.
ONNX_PREFIX = "cnnx."

# Colour modes a spec may name, by channel count: what Pillow converts an image to.
COLORS = {1: "L", 3: "RGB"}
# Largest input side a model file may ask for: a hostile spec must not make the runtime
# allocate gigabytes per image.
MAX_SIDE = 4096

# The preprocessing recipes the runtime knows (cnnx.runtime.image implements them).
RECIPES = {
    "mnist-digit": "find the ink (light-on-dark, inverting if needed), crop to it, "
    "fit into 20x20 keeping aspect, centre by mass in 28x28",
    "resize": "convert to the colour mode and resize to the input size",
}
# How a spec's ``openset`` may score an input (cnnx.core.calibration implements them).
OPENSET_METHODS = ("msp", "energy")  # how a refusal scores an input (cnnx.core.calibration.scores)


class Extra:
    """The keys of ``ModelSpec.extra``: provenance that export writes and ``cnnx inspect`` reads.

    One definition of each name; files written by earlier versions use the same strings, and a
    key a file lacks is simply absent.
    """

    FORMAT = "format"  # "onnx" or "torchscript"
    PRECISION = "precision"  # "fp32" or "int8"
    OPSET = "opset"  # ONNX: the default-domain opset of the graph, int
    EXPORTER = "exporter"  # ONNX: the exporter that made the graph, "dynamo" or "legacy"
    TORCHSCRIPT = "torchscript"  # TorchScript: "script" or "trace"
    DELEGATE = "delegate"  # ExecuTorch: "xnnpack" or "portable" (no delegate)
    QUANTIZATION = "quantization"  # int8: {"format", "weights", "activations", "calibration", ...}
    PARITY = "parity"  # the parity gate's summary for this very file (6 significant digits)
    REJECTED = "rejected"  # [{"method", "error"}]: ways of making the file that failed before this one
    TRAINED_WITH = "trained_with"  # versions at training, when export ran under others ({"cnnx", "torch"})
    SPEC_FROM = "spec_from"  # "options": a spec made from --mean/--std/--size, not read from a file
    FOLDED = "batchnorm_folded"  # BatchNorm layers folded into their convolutions (cnnx.export.fold), int
    PADDED = "channels_padded"  # convolutions padded with zero filters to whole channel blocks (cnnx.export.fold), int

    # how the file was made, in the order `cnnx inspect` lists it
    MADE_BY = (PRECISION, EXPORTER, TORCHSCRIPT, DELEGATE, QUANTIZATION, FOLDED, PADDED)
    # what describes one file's own check, dropped when a spec is copied into another file
    CHECK = (PARITY, REJECTED)


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
    # {"temperature": T, "fitted_on", "nll"/"ece" before and after}: probabilities are softmax(logits / T)
    calibration: dict[str, Any] | None = None
    # {"method": "energy" or "msp", "threshold": t, "false_refusal", "fitted_on"}: refuse inputs scoring below t
    openset: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.input_shape = tuple(int(v) for v in self.input_shape)  # type: ignore[assignment]
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        self.classes = [str(c) for c in self.classes]
        if len(self.input_shape) != 3:
            raise ModelFileError(f"input_shape must be (C, H, W), got {self.input_shape}")
        channels = self.input_shape[0]
        if len(self.mean) != channels or len(self.std) != channels:
            raise ModelFileError(f"mean {self.mean} and std {self.std} need one value per channel ({channels})")
        if not all(math.isfinite(v) for v in (*self.mean, *self.std)):
            raise ModelFileError(f"mean {self.mean} and std {self.std} must be finite numbers")
        bad = next((i for i, s in enumerate(self.std) if s <= 0), None)
        if bad is not None:
            where = f" for channel {bad + 1} of {channels}" if channels > 1 else ""
            raise ModelFileError(f"std must be positive, got {self.std[bad]:g}{where}")
        _check_honesty(self.calibration, self.openset)
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
        if not isinstance(data, dict):
            raise ModelFileError(
                f"the model spec is not a JSON object (found {type(data).__name__})",
                "re-export the model with `cnnx export`",
            )
        names = {f.name for f in dataclasses.fields(cls)}
        missing = {"arch", "input_shape", "color", "mean", "std", "classes"} - data.keys()
        if missing:
            raise ModelFileError(f"model spec lacks {', '.join(sorted(missing))}")
        try:
            spec = cls(**{k: v for k, v in data.items() if k in names})
        except (TypeError, ValueError, OverflowError) as exc:  # "input_shape": "abc" or [1e400] in a hostile file
            raise ModelFileError(f"model spec has a malformed value: {exc}") from None
        if spec.color not in COLORS.values():
            raise ModelFileError(f"model spec names colour mode {spec.color!r}", f"known: {', '.join(COLORS.values())}")
        if not all(1 <= v <= MAX_SIDE for v in spec.input_shape):
            raise ModelFileError(
                f"model spec asks for input shape {spec.input_shape}", f"each side must be 1 to {MAX_SIDE}"
            )
        return spec

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
                data[key[len(ONNX_PREFIX) :]] = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ModelFileError(f"metadata {key!r} is not valid JSON: {exc}") from None
        if not data:
            raise ModelFileError(
                "the model file carries no cnnx spec",
                "`cnnx infer` runs it given --mean, --std and --size; or export it with `cnnx export`",
            )
        return cls.from_dict(data)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_honesty(calibration: Any, openset: Any) -> None:
    """A spec's calibration and openset, as a (possibly hostile) file gives them."""
    if calibration is not None:
        t = calibration.get("temperature") if isinstance(calibration, dict) else None
        if not (_number(t) and float(t or 0) > 0):
            raise ModelFileError(f"model spec has calibration {calibration!r}", "its temperature must be a number > 0")
    if openset is not None:
        method = openset.get("method") if isinstance(openset, dict) else None
        if method not in OPENSET_METHODS or not _number(openset.get("threshold")):
            raise ModelFileError(
                f"model spec has openset {openset!r}",
                f"it needs a method ({', '.join(OPENSET_METHODS)}) and a finite threshold",
            )


def parse_floats(text: str, what: str) -> tuple[float, ...]:
    """ "0.5" or "0.485,0.456,0.406" -> floats; ConfigError naming ``what`` otherwise."""
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise ConfigError(f"{what} {text!r} is not a number or a comma-separated list of numbers") from None
    if not all(math.isfinite(v) for v in values):
        raise ConfigError(f"{what} {text!r} must be finite")
    return values


def parse_dims(text: str, option: str, lengths: tuple[int, ...] = (1, 2)) -> list[int]:
    """ "28", "32x24", "3x32x32" -> [28], [32, 24], [3, 32, 32]: ``lengths`` says how many values
    ``option`` takes, each 1 to MAX_SIDE; ConfigError naming ``option`` otherwise."""
    try:
        dims = [int(p) for p in text.lower().replace(" ", "").replace(",", "x").split("x")]
    except ValueError:
        dims = []
    if len(dims) not in lengths or not all(1 <= v <= MAX_SIDE for v in dims):
        forms = " or ".join(["N", "HxW", "CxHxW"][n - 1] for n in lengths)
        raise ConfigError(f"{option} {text!r} is not a size", f"give {forms}, each 1 to {MAX_SIDE}")
    return dims


def parse_size(text: str, option: str = "--size") -> tuple[int, int]:
    """ "28" -> (28, 28); "32x24" (height x width) -> (32, 24)."""
    hw = parse_dims(text, option)
    return (hw[0], hw[-1])


@dataclass
class SpecOptions:
    """What a user tells cnnx about a model file that carries no spec (``--mean/--std/--size``)."""

    mean: tuple[float, ...] | None = None  # per-channel mean of pixels in [0, 1]; one value = every channel
    std: tuple[float, ...] | None = None  # per-channel std, the same way
    size: tuple[int, int] | None = None  # (H, W) the image is resized to
    classes: list[str] | None = None  # class names; None = "0", "1", ... as many as the model outputs
    preprocess: str = "resize"  # recipe, a key of RECIPES

    @classmethod
    def of(
        cls,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        size: int | tuple[int, int] | None = None,
        classes: Sequence[str] | None = None,
        preprocess: str = "resize",
    ) -> SpecOptions:
        """From API values: sequences as tuples and lists, one side ``N`` as ``(N, N)``."""
        return cls(
            mean=None if mean is None else tuple(mean),
            std=None if std is None else tuple(std),
            size=(size, size) if isinstance(size, int) else size,
            classes=None if classes is None else list(classes),
            preprocess=preprocess,
        )

    def refuse(self, path: object) -> None:
        """A file with its own cnnx spec takes none of these options: the spec stays the single source."""
        if self.given():
            raise ConfigError(
                f"{path} carries its own cnnx spec; --mean/--std/--size/--classes are only for ONNX files without one"
            )

    def given(self) -> bool:
        return any(v is not None for v in (self.mean, self.std, self.size, self.classes))

    def to_spec(
        self, channels: int | None, outputs: int | None, source: str, size: tuple[int, int] | None = None
    ) -> ModelSpec:
        """The spec these options describe for a model whose graph takes ``channels`` images of ``size``
        (H, W) and gives ``outputs`` classes (None where the graph leaves them open; --size wins)."""
        if self.size is None and size is not None:
            return dataclasses.replace(self, size=size).to_spec(channels, outputs, source)
        missing = [name for name, v in (("--mean", self.mean), ("--std", self.std), ("--size", self.size)) if v is None]
        if missing:
            raise ConfigError(
                f"{source} carries no cnnx spec, so cnnx needs {', '.join(missing)}",
                "e.g. --mean 0.1307 --std 0.3081 --size 28 for an MNIST model",
            )
        assert self.mean is not None and self.std is not None and self.size is not None
        c = channels or max(len(self.mean), len(self.std))
        if c not in COLORS:
            raise ConfigError(f"{source} takes {c} channels; cnnx reads images as 1 (L) or 3 (RGB)")
        classes = self.classes or ([str(i) for i in range(outputs)] if outputs else None)
        if not classes:
            raise ConfigError(f"{source} does not fix its number of classes", "give --classes a,b,c")
        mean = self.mean * c if len(self.mean) == 1 else self.mean
        std = self.std * c if len(self.std) == 1 else self.std
        try:
            return ModelSpec(
                arch="external",
                input_shape=(c, *self.size),
                color=COLORS[c],
                mean=mean,
                std=std,
                classes=classes,
                preprocess=self.preprocess,
                extra={Extra.SPEC_FROM: "options"},
            )
        except ModelFileError as exc:  # the same checks as a spec read from a file, reported as options
            raise ConfigError(exc.message, exc.hint) from None
