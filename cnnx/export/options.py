"""``ExportOptions``: what ``cnnx export`` is asked for, one field per option, checked on creation."""

from __future__ import annotations

from dataclasses import dataclass

from cnnx.core.errors import ConfigError
from cnnx.export.formats import FORMATS, missing, onnx_fp32

# formats only a flag of their own asks for (--int8), never "all": each is the int8 file of the fp32 format it
# REQUIRES, made when that format is asked for
ON_REQUEST = ("onnx-int8", "tflite-int8")
# what --format NAME asks for: a format made from the fp32 ONNX file brings that file too;
# "all" is every format but those on request, less those whose tools are not installed


def _asks(name: str) -> tuple[str, ...]:
    """The formats ``--format name`` makes: the one its file is made from (if any), then itself."""
    source = getattr(FORMATS[name], "REQUIRES", None)
    return (source, name) if source else (name,)


CHOICES: dict[str, tuple[str, ...]] = {
    **{name: _asks(name) for name in FORMATS if name not in ON_REQUEST},
    "all": tuple(name for name in FORMATS if name not in ON_REQUEST),
}
EXPORTERS = ("auto", *onnx_fp32.METHODS)


@dataclass
class ExportOptions:
    format: str = "onnx"  # a format's name (see CHOICES), or all (every installed format but int8)
    also: tuple[str, ...] = ()  # more formats by name (CHOICES), beside format's; no CLI option (cnnx bench)
    int8: bool = False  # also write the int8 file of each asked format that has one (ONNX QDQ, full-integer TFLite)
    int8_optional: bool = False  # an int8 file that misses its gate is left out (reason in "skipped"), not an error
    out: str | None = None  # folder, or a file name whose stem names the files; None = beside the checkpoint
    opset: int = onnx_fp32.DEFAULT_OPSET  # ONNX opset of the fp32 file
    exporter: str = "auto"  # ONNX exporter: auto (dynamo, then legacy), dynamo or legacy
    arch: str | None = None  # architecture of a bare state_dict (cnnx checkpoints name their own)
    mean: tuple[float, ...] | None = None  # overrides the spec's per-channel mean
    std: tuple[float, ...] | None = None  # overrides the spec's per-channel std
    classes: list[str] | None = None  # overrides the spec's class names
    data_dir: str | None = None  # dataset folder for the parity images; None = $CNNX_DATA_DIR, else the sample
    threads: int = 0  # torch and onnxruntime threads during parity; 0 = half the cores, 1 to 4
    pad_channels: bool = True  # ONNX family: channels padded to whole blocks where cheap (cnnx.export.fold)

    def __post_init__(self) -> None:
        for asked in (self.format, *self.also):
            if asked not in CHOICES or (asked == "all" and asked != self.format):
                raise ConfigError(f"--format must be one of {', '.join(CHOICES)}, got {asked!r}")
            _tools_here(CHOICES[asked] if asked != "all" else (), f"--format {asked}")
        if self.int8 and not self._int8_names(self._asked()):
            raise ConfigError(
                f"--int8 quantises the ONNX export or the TFLite one, but --format is {self.format}",
                "use --format onnx, tflite or all with --int8",
            )
        if self.int8 and self.format != "all":  # int8 asked for by name: its tools must be here too
            for name in self._int8_names(self._asked()):
                _tools_here((name,), f"--int8 with --format {FORMATS[name].REQUIRES}")
        if not 13 <= self.opset <= 23:
            raise ConfigError(
                f"--opset must be between 13 and 23, got {self.opset}",
                f"the default, {onnx_fp32.DEFAULT_OPSET}, runs on onnxruntime 1.14 and later",
            )
        if self.exporter not in EXPORTERS:
            raise ConfigError(f"--exporter must be one of {', '.join(EXPORTERS)}, got {self.exporter!r}")
        if self.threads < 0:
            raise ConfigError(f"--threads must be 0 (automatic) or more, got {self.threads}")

    @property
    def names(self) -> list[str]:
        """The formats to make, each after the one its file is made from."""
        asked = self._asked()
        return list(dict.fromkeys([*asked, *(self._int8_names(asked) if self.int8 else [])]))

    def _asked(self) -> list[str]:
        return [name for choice in (self.format, *self.also) for name in CHOICES[choice]]

    @staticmethod
    def _int8_names(asked: list[str]) -> list[str]:
        """The int8 formats made from the fp32 formats in ``asked``."""
        return [name for name in ON_REQUEST if FORMATS[name].REQUIRES in asked]


def _tools_here(names: tuple[str, ...] | list[str], asked_as: str) -> None:
    """ConfigError naming ``asked_as`` (the option as the user gave it) when a format in ``names`` cannot be
    made on this machine (its tools are not installed)."""
    for name in names:
        why = missing(name)
        if why:
            raise ConfigError(f"{asked_as} cannot be made here: {why}")
