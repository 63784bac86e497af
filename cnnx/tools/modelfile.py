"""Open any model file cnnx makes for evaluation: ONNX (no torch), checkpoint or TorchScript (torch).

Every backend has the runtime's model shape: ``spec`` and ``run(float32 (N, C, H, W))
-> float32 (N, K) logits``. torch is imported only when a torch file is opened, so
``cnnx eval model.onnx`` runs on a device without it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cnnx.core.contract import TORCHSCRIPT_SPEC_FILE, first_line, is_torch_file, is_torchscript
from cnnx.core.errors import ModelFileError
from cnnx.core.machine import physical_cores
from cnnx.core.spec import ModelSpec, SpecOptions


class TorchModel:
    """A torch module behind the runtime's model shape: ``spec``, ``path`` and ``run`` (``TorchRunner``)."""

    def __init__(self, module: Any, spec: ModelSpec, path: Path, threads: int | None) -> None:
        import torch

        from cnnx.train.runner import TorchRunner

        torch.set_num_threads(threads or physical_cores())
        self.spec, self.path = spec, path
        self.run = TorchRunner(module).run


def _load_checkpoint_model(path: Path, threads: int | None) -> TorchModel:
    from cnnx.train.checkpoint import load_checkpoint, load_weights, resolve_checkpoint
    from cnnx.train.models import build_model

    path = resolve_checkpoint(path)
    state = load_checkpoint(path)
    spec = ModelSpec.from_dict(state["spec"])
    # the input shape picks the first layer's channels: a --grayscale folder run takes 1, not 3
    model = build_model(spec.arch, spec.num_classes, spec.input_shape)
    load_weights(
        model, state["model"], f"the weights in {path} do not fit {spec.arch}", "use a checkpoint of cnnx train"
    )
    return TorchModel(model, spec, path, threads)


def _load_torchscript(path: Path, threads: int | None) -> TorchModel:
    from cnnx.train.runner import load_torchscript

    try:
        module, raw = load_torchscript(path, TORCHSCRIPT_SPEC_FILE)  # torch's deprecation notice kept quiet
    except Exception as exc:  # RuntimeError with a C++ backtrace: keep its first line
        first = first_line(exc)
        raise ModelFileError(f"{path} is not a loadable TorchScript file: {first[:300]}") from None
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
    if path.is_dir() or is_torch_file(path):
        options.refuse(path)
        if path.is_file() and is_torchscript(path):
            return _load_torchscript(path, threads)
        return _load_checkpoint_model(path, threads)
    from cnnx.runtime.backends import open_model

    return open_model(path, threads=threads, options=options)
