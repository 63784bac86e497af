"""Open any model file cnnx makes for evaluation: ONNX (no torch), checkpoint or TorchScript (torch).

Every backend has the runtime's model shape: ``spec`` and ``run(float32 (N, C, H, W))
-> float32 (N, K) logits``. torch is imported only when a torch file is opened, so
``cnnx eval model.onnx`` runs on a device without it.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnx.core.contract import TORCHSCRIPT_SPEC_FILE, first_line
from cnnx.core.errors import ModelFileError
from cnnx.core.machine import physical_cores
from cnnx.core.spec import ModelSpec, SpecOptions

TORCH_SUFFIXES = frozenset({".pt", ".pth", ".ckpt", ".torchscript", ".ts", ".jit"})


def _is_torchscript(path: Path) -> bool:
    # TorchScript archives hold compiled code (".../code/..." and constants.pkl);
    # torch.save archives hold only data.pkl and tensors
    with zipfile.ZipFile(path) as z:
        return any("/code/" in n or n.endswith("/constants.pkl") for n in z.namelist())


class TorchModel:
    """A torch module in eval mode behind the runtime's ``run`` interface."""

    def __init__(self, module: Any, spec: ModelSpec, path: Path, threads: int | None) -> None:
        import torch

        torch.set_num_threads(threads or physical_cores())
        self.module, self.spec, self.path = module.eval(), spec, path

    def run(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.module(torch.from_numpy(np.ascontiguousarray(x, np.float32))).float().numpy()


def _load_checkpoint_model(path: Path, threads: int | None) -> TorchModel:
    from cnnx.train.checkpoint import load_checkpoint, resolve_checkpoint
    from cnnx.train.models import build_model

    state = load_checkpoint(path)
    spec = ModelSpec.from_dict(state["spec"])
    model = build_model(spec.arch, spec.num_classes)
    model.load_state_dict(state["model"])
    return TorchModel(model, spec, resolve_checkpoint(path), threads)


def _load_torchscript(path: Path, threads: int | None) -> TorchModel:
    import torch

    extra = {TORCHSCRIPT_SPEC_FILE: ""}
    try:
        with warnings.catch_warnings():
            # torch 2.9+ warns that TorchScript is deprecated on every load: the user asked for this file
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as exc:  # RuntimeError with a C++ backtrace: keep its first line
        first = first_line(exc)
        raise ModelFileError(f"{path} is not a loadable TorchScript file: {first[:300]}") from None
    raw = extra[TORCHSCRIPT_SPEC_FILE]
    if not raw:
        raise ModelFileError(f"{path} carries no {TORCHSCRIPT_SPEC_FILE}", "export it with `cnnx export`")
    try:
        spec = ModelSpec.from_dict(json.loads(raw))
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path}: {TORCHSCRIPT_SPEC_FILE} is not valid JSON: {exc}") from None
    except ModelFileError as exc:  # a spec that is not an object, or holds impossible values
        raise ModelFileError(f"{path}: {exc.message}", exc.hint) from None
    return TorchModel(module, spec, path, threads)


def open_model(
    path: str | Path,
    threads: int | None = None,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    size: tuple[int, int] | None = None,
    classes: Sequence[str] | None = None,
) -> Any:
    """An ONNX session for .onnx files; a torch model for run folders, checkpoints and TorchScript.

    ``mean``, ``std``, ``size``, ``classes``: for an ONNX file without a cnnx spec (as Classifier's).
    """
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"no model file at {path}", "give an .onnx, .pt or TorchScript file")
    options = SpecOptions.of(mean, std, size, classes)
    if path.is_dir() or path.suffix.lower() in TORCH_SUFFIXES or zipfile.is_zipfile(path):
        options.refuse(path)
        if path.is_file() and zipfile.is_zipfile(path) and _is_torchscript(path):
            return _load_torchscript(path, threads)
        return _load_checkpoint_model(path, threads)
    from cnnx.runtime.session import OnnxModel

    return OnnxModel(path, threads=threads, options=options)
