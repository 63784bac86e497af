"""What an export starts from: a cnnx checkpoint or a bare ``state_dict``, as an eval-mode model plus its spec.

A cnnx checkpoint carries its spec. A bare ``state_dict`` (what
``torch.save(model.state_dict(), PATH)`` writes, e.g. the seed scripts) carries
nothing else, so it needs ``--arch``; its spec then comes from the
architecture's dataset defaults, with ``--mean/--std/--classes`` overriding
them. Everything loads with ``weights_only=True`` onto the CPU, so a checkpoint
saved on CUDA exports on a machine without a GPU.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import cnnx
from cnnx.core.contract import is_torchscript
from cnnx.core.errors import CheckpointError, ConfigError, ModelFileError
from cnnx.core.onnxio import fields
from cnnx.core.spec import Extra, ModelSpec
from cnnx.train import checkpoint as ckpt
from cnnx.train.checkpoint import unwrap_state_dict
from cnnx.train.data import facts_of
from cnnx.train.models import ARCHS, build_model, fitting_archs, get_arch

_ONNX_GRAPH = 7  # ModelProto's graph field


@dataclass
class Source:
    """An eval-mode model on the CPU and the spec that describes it."""

    model: nn.Module
    spec: ModelSpec
    path: Path  # the file that was read
    kind: str  # "cnnx-checkpoint" or "state_dict"
    sha256: str
    info: dict[str, Any] = field(default_factory=dict)  # epoch, metrics ... for reports
    train_config: dict[str, Any] | None = None  # TrainConfig as saved: where the parity images come from


def _load_into(spec: ModelSpec, state: dict[str, torch.Tensor], path: Path) -> nn.Module:
    arch, classes = spec.arch, spec.classes
    model = build_model(arch, len(classes), spec.input_shape)

    def which_fit() -> str:
        fits = fitting_archs(state)
        return f"they fit: {', '.join(fits)}" if fits else "check --arch and --classes"

    what = f"the weights in {path} do not fit --arch {arch} with {len(classes)} classes"
    return ckpt.load_weights(model, state, what, which_fit).eval()


def _apply_overrides(
    spec: ModelSpec, mean: tuple[float, ...] | None, std: tuple[float, ...] | None, classes: list[str] | None
) -> ModelSpec:
    changes: dict[str, Any] = {k: v for k, v in (("mean", mean), ("std", std)) if v is not None}
    if classes is not None:
        if len(classes) != len(set(classes)) or not classes:
            raise ConfigError(f"--classes must be distinct names, got {classes}")
        changes["classes"] = classes
    return spec.replace(**changes) if changes else spec


def _keeps_its_spec(
    spec: ModelSpec,
    path: Path,
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
    classes: list[str] | None,
) -> None:
    """A cnnx checkpoint was trained on the mean/std its spec carries and gives one output per class:
    other values would feed it other numbers than it learnt on (and the parity gates would pass, the
    reference being fed them too); other class names are fine, another count of them is not."""
    for name, given, own in (("mean", mean, spec.mean), ("std", std, spec.std)):
        if given is not None and tuple(given) != tuple(own):
            raise ConfigError(
                f"{path} was trained with {name} {', '.join(f'{v:g}' for v in own)}; --{name} "
                f"{', '.join(f'{v:g}' for v in given)} would feed it other numbers than it learnt on",
                f"leave out --{name}: the checkpoint's own is used (--mean and --std are for a bare state_dict)",
            )
    if classes is not None and len(classes) != len(spec.classes):
        raise ConfigError(
            f"--classes names {len(classes)} classes; {path} was trained on {len(spec.classes)} "
            f"({', '.join(spec.classes[:10])}{', ...' if len(spec.classes) > 10 else ''})",
            f"give {len(spec.classes)} names, in the order of the model's outputs, or leave out --classes",
        )


def default_spec(arch_name: str) -> ModelSpec:
    """The spec a bare state_dict of ``arch_name`` gets: the architecture's dataset defaults."""
    arch = get_arch(arch_name)
    facts = facts_of(arch.dataset)
    if facts is None:
        raise ConfigError(
            f"architecture {arch_name!r} was built for dataset {arch.dataset!r}, which has no defaults",
            "give --mean, --std and --classes",
        )
    return ModelSpec(arch=arch_name, input_shape=arch.input_shape, **facts.spec_fields())  # type: ignore[arg-type]


def _exported_as(path: Path) -> str | None:
    """ "ONNX" or "TorchScript" when ``path`` is a file export makes, not a checkpoint; None otherwise."""
    if zipfile.is_zipfile(path):  # torch.save's archives hold data only; TorchScript's hold compiled code
        return "TorchScript" if is_torchscript(path) else None
    with open(path, "rb") as f:
        first = f.read(1)
    if path.suffix.lower() != ".onnx" and first != b"\x08":  # an ONNX ModelProto opens with ir_version, field 1
        return None
    try:
        return "ONNX" if any(number == _ONNX_GRAPH for number, _ in fields(path.read_bytes())) else None
    except ModelFileError:  # not protobuf at all
        return None


def _read_cnnx(raw: dict[str, Any], path: Path, arch: str | None) -> tuple[ModelSpec, dict[str, Any]]:
    """The spec of a cnnx checkpoint and what a report says about it (epoch, best accuracy, last metrics)."""
    if not isinstance(raw.get("spec"), dict) or not isinstance(raw.get("model"), dict):
        raise CheckpointError(
            f"{path} says it is a cnnx checkpoint but has no model or spec", "use a checkpoint written by cnnx train"
        )
    spec = ModelSpec.from_dict(raw["spec"])
    if arch is not None and arch != spec.arch:
        raise ConfigError(
            f"--arch {arch} disagrees with the checkpoint, which was trained as {spec.arch}",
            "leave out --arch for cnnx checkpoints",
        )
    info = {
        "epoch": raw.get("epoch"),
        "best_accuracy": raw.get("best_accuracy"),
        "metrics": (raw.get("metrics") or [])[-1:],
    }
    return spec, info


def _read(path: Path, arch: str | None) -> tuple[ModelSpec, dict[str, torch.Tensor], str, dict[str, Any], dict | None]:
    """(spec, state_dict, kind, info, training config) of a cnnx checkpoint or a bare state_dict."""
    exported = _exported_as(path)
    if exported:
        raise CheckpointError(
            f"{path} is already an export ({exported}); cnnx export reads the checkpoint it was made from",
            "give that run folder or .pt file; `cnnx inspect` on this file names the checkpoint's sha256",
        )
    raw = ckpt.load_raw(path)  # weights_only=True, map_location="cpu"; refuses pickled whole models
    if isinstance(raw, dict) and raw.get("format") == ckpt.FORMAT:
        spec, info = _read_cnnx(raw, path, arch)
        return spec, raw["model"], "cnnx-checkpoint", info, raw.get("config")
    state = unwrap_state_dict(raw, path)
    if arch is None:
        fits = fitting_archs(state)
        raise CheckpointError(
            f"{path} is a bare state_dict: it does not say which architecture it belongs to",
            f"give --arch NAME ({'it fits: ' + ', '.join(fits) if fits else 'choose from: ' + ', '.join(ARCHS)})",
        )
    return default_spec(arch), state, "state_dict", {}, None


def load_source(
    path: Path,
    arch: str | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    classes: list[str] | None = None,
) -> Source:
    """Read ``path`` (a checkpoint, a run folder or a state_dict) into an eval-mode CPU model and its spec."""
    path = ckpt.resolve_checkpoint(Path(path))
    spec, state, kind, info, config = _read(path, arch)
    given = _apply_overrides(spec, mean, std, classes)  # the values checked first (a zero std says so)
    if kind == "cnnx-checkpoint":
        _keeps_its_spec(spec, path, mean, std, classes)
    spec = given
    model = _load_into(spec, state, path)
    sha = ckpt.file_sha256(path)
    versions = {"cnnx": cnnx.__version__, "torch": str(torch.__version__)}
    extra = dict(spec.extra)
    if spec.versions and spec.versions != versions:
        extra[Extra.TRAINED_WITH] = dict(spec.versions)  # the export's own versions replace them below
    spec = spec.replace(checkpoint_sha256=sha, extra=extra, versions=versions)
    return Source(model=model, spec=spec, path=path, kind=kind, sha256=sha, info=info, train_config=config)
