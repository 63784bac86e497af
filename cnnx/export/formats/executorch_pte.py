"""ExecuTorch export: a ``.pte`` program for PyTorch's on-device runtime, the XNNPACK delegate running it.

Made from the torch module (``torch.export`` with a dynamic batch axis, lowered with
``to_edge_transform_and_lower`` and the XNNPACK partitioner, then ``to_executorch``); the
``portable`` method, ExecuTorch's own portable kernels without a delegate, is the fallback.
ExecuTorch plans every tensor's memory ahead of time for the largest shapes the program
allows, so the batch axis is bounded: a program takes at most ``MAX_BATCH`` images per call,
and the loader here runs larger batches in pieces. The gate loads the file back with
ExecuTorch's Python runtime (``executorch.runtime``), as an application embeds it.

A ``.pte`` has no place for metadata, so the spec travels beside it in ``NAME.pte.json``
(the same JSON ``ModelSpec.to_dict`` writes everywhere). ExecuTorch's Python runtime takes
torch tensors, so ``cnnx infer`` and ``cnnx verify`` (which never import torch) do not open
these files; an application runs them with ExecuTorch's C++, Java or Swift runtime.

Needs the ``executorch`` package: ``pip install "cnnx[executorch]"`` (it works with the
torch of the training install; see the README for the versions measured).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnx.core.contract import first_line
from cnnx.core.errors import ModelFileError
from cnnx.core.fileio import atomic_write
from cnnx.core.quiet import native_stderr_held, notices_held
from cnnx.core.spec import Extra, ModelSpec

SUFFIX = ".pte"
SPEC_SUFFIX = ".pte.json"  # the spec beside the program
COMPANIONS = (SPEC_SUFFIX,)
METHODS = ("xnnpack", "portable")  # tried in this order until one passes the parity gate
MAX_BATCH = 64  # images per program call: ExecuTorch plans memory for this many
INSTALL = 'pip install "cnnx[executorch]"'


def _notices_held() -> Any:
    """ExecuTorch's own imports warn (importlib.resources' read_text) and make torch log a deprecation
    notice (an Enum registered with pytree): neither is the user's to act on."""
    return notices_held(("torch.utils._pytree",), (DeprecationWarning, FutureWarning))


def missing() -> str | None:
    """Why this format cannot be made here, or None."""
    try:
        with _notices_held():
            _imports()
    except Exception as exc:  # ImportError, or an executorch built for another torch
        return f"executorch is not installed or does not load ({first_line(exc)[:200]}): {INSTALL}"
    return None


def _imports() -> None:
    import executorch.exir  # noqa: F401
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner  # noqa: F401
    from executorch.runtime import Runtime  # noqa: F401


def _program(model: nn.Module, spec: ModelSpec, method: str) -> bytes:
    """The ``.pte`` bytes of ``model``, lowered to XNNPACK (``method`` "xnnpack") or not ("portable")."""
    from executorch.exir import to_edge_transform_and_lower

    # the example is as large as the bound: memory is planned for the example's shapes
    example = torch.zeros((MAX_BATCH, *spec.input_shape), dtype=torch.float32)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    partitioner: list[Any] = []
    if method == "xnnpack":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        partitioner = [XnnpackPartitioner()]
    with torch.no_grad():
        exported = torch.export.export(model.eval(), (example,), dynamic_shapes=({0: batch},))
        return bytes(to_edge_transform_and_lower(exported, partitioner=partitioner).to_executorch().buffer)


def _spec_path(path: Path) -> Path:
    return path.parent / (path.name.removesuffix(SUFFIX) + SPEC_SUFFIX)


def _write_spec(spec: ModelSpec, path: Path) -> Path:
    text = json.dumps(spec.to_dict(), indent=2, sort_keys=True) + "\n"
    return atomic_write(_spec_path(path), lambda f: f.write(text.encode()))


def export(model: nn.Module, spec: ModelSpec, path: Path, *, method: str = "xnnpack", **_: Any) -> Path:
    """Write ``model`` (eval mode, CPU) as an ExecuTorch program at ``path`` and its spec beside it."""
    with _notices_held():
        import executorch
    try:
        with native_stderr_held(), _notices_held():
            data = _program(model, spec, method)
    except Exception as exc:  # torch.export and the lowering raise errors of many types
        raise ModelFileError(f"ExecuTorch export ({method}) failed: {first_line(exc)[:300]}") from None
    atomic_write(path, lambda f: f.write(data))
    version = getattr(executorch, "__version__", None) or _dist_version("executorch")
    made = {Extra.FORMAT: "executorch", Extra.PRECISION: "fp32", Extra.DELEGATE: method}
    _write_spec(spec.replace(versions={**spec.versions, "executorch": version}, extra={**spec.extra, **made}), path)
    return path


def _dist_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


class LoadedPte:
    """A ``.pte`` loaded back with ExecuTorch's Python runtime, as an application loads it."""

    def __init__(self, path: Path) -> None:
        with _notices_held():
            from executorch.runtime import Runtime

        self.path = Path(path)
        try:
            with native_stderr_held():
                self.method = Runtime.get().load_program(str(self.path)).load_method("forward")
        except Exception as exc:
            raise ModelFileError(f"{self.path} does not load in ExecuTorch: {first_line(exc)[:300]}") from None

    def run(self, x: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(x), MAX_BATCH):
            part = torch.from_numpy(np.ascontiguousarray(x[i : i + MAX_BATCH], dtype=np.float32))
            try:
                (logits,) = self.method.execute([part])
            except Exception as exc:
                raise ModelFileError(f"{self.path} failed on a batch of shape {tuple(part.shape)}: {exc}") from None
            out.append(logits.detach().numpy().astype(np.float32, copy=True))  # its memory is reused next call
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def signature(self) -> None:
        return None  # a program names no inputs or outputs; outputs are checked by shape

    def spec(self) -> ModelSpec:
        where = _spec_path(self.path)
        try:
            return ModelSpec.from_dict(json.loads(where.read_text()))
        except OSError as exc:
            raise ModelFileError(
                f"cannot read {where}: {exc.strerror or exc}", "export it with `cnnx export`"
            ) from None

    def write_spec(self, spec: ModelSpec, selfcheck: str | None = None) -> Path:
        """Rewrite the spec beside the program (the program itself is left as checked; it carries no self-check)."""
        _write_spec(spec, self.path)
        return self.path


def load(path: Path, threads: int) -> LoadedPte:
    return LoadedPte(path)
