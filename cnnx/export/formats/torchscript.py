"""TorchScript export: a ``.torchscript`` archive with the model spec in its extra files.

``torch.jit.script`` keeps control flow and is tried first; ``torch.jit.trace``
(recording one forward pass on an example batch) is the fallback for code that
does not script. The spec travels as ``cnnx_spec.json`` (``json.dumps(spec.to_dict())``):

    files = {"cnnx_spec.json": ""}
    module = torch.jit.load(path, _extra_files=files)
    spec = json.loads(files["cnnx_spec.json"])
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnx.core.contract import TORCHSCRIPT_SPEC_FILE, first_line
from cnnx.core.errors import ModelFileError
from cnnx.core.fileio import atomic_write
from cnnx.core.spec import Extra, ModelSpec
from cnnx.train.runner import TorchRunner, load_torchscript, save_torchscript

SUFFIX = ".torchscript"
METHODS = ("script", "trace")  # tried in this order until one passes the parity gate


def _build(model: nn.Module, spec: ModelSpec, method: str) -> torch.jit.ScriptModule:
    if method == "script":
        return torch.jit.script(model)
    # batch 2: a traced batch of 1 can bake size-1 broadcasting into the graph
    example = torch.zeros((2, *spec.input_shape), dtype=torch.float32)
    return torch.jit.trace(model, example, check_trace=False)


def _save(module: torch.jit.ScriptModule, spec: ModelSpec, path: Path) -> Path:
    files = {TORCHSCRIPT_SPEC_FILE: json.dumps(spec.to_dict(), sort_keys=True)}
    return atomic_write(path, lambda f: save_torchscript(module, f, files))


def export(model: nn.Module, spec: ModelSpec, path: Path, *, method: str = "script", **_: Any) -> Path:
    """Write ``model`` (eval mode, CPU) as TorchScript to ``path``; raises ModelFileError if ``method`` cannot."""
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # torch.jit's deprecation and tracer notices; parity decides, not warnings
            module = _build(model, spec, method)
    except Exception as exc:  # scripting raises frontend errors of many types
        first = first_line(exc)
        raise ModelFileError(f"torch.jit.{method} failed: {first[:300]}") from None
    extra = {Extra.FORMAT: "torchscript", Extra.PRECISION: "fp32", Extra.TORCHSCRIPT: method}
    return _save(module, spec.replace(extra={**spec.extra, **extra}), path)


class LoadedTorchScript:
    """An exported archive loaded back with ``torch.jit.load``, as a consumer would load it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.module, self._spec_json = load_torchscript(self.path, TORCHSCRIPT_SPEC_FILE)
        self._runner = TorchRunner(self.module)

    def run(self, x: np.ndarray) -> np.ndarray:
        return self._runner.run(x)

    def signature(self) -> None:
        return None  # TorchScript declares no input/output names; outputs are checked by shape

    def spec(self) -> ModelSpec:
        if not self._spec_json:
            raise ModelFileError(f"{self.path} carries no {TORCHSCRIPT_SPEC_FILE}", "export it with `cnnx export`")
        return ModelSpec.from_dict(json.loads(self._spec_json))

    def write_spec(self, spec: ModelSpec, selfcheck: str | None = None) -> Path:
        """Re-save the module that was checked, with ``spec`` as its extra file (it carries no self-check)."""
        return _save(self.module, spec, self.path)


def load(path: Path, threads: int) -> LoadedTorchScript:
    return LoadedTorchScript(path)
