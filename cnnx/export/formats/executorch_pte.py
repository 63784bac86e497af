"""ExecuTorch export: a ``.pte`` program for PyTorch's on-device runtime, the XNNPACK delegate running it.

Made from the torch module (``torch.export`` with a dynamic batch axis, lowered with
``to_edge_transform_and_lower`` and the XNNPACK partitioner, then ``to_executorch``); the
``portable`` method, ExecuTorch's own portable kernels without a delegate, is the fallback.
ExecuTorch plans every tensor's memory ahead of time for the largest shapes the program
allows, so the batch axis is bounded: a program takes at most ``MAX_BATCH`` images per call,
and the loader here runs larger batches in pieces. The gate loads the file back with
ExecuTorch's Python runtime (``executorch.runtime``), as an application embeds it.

A ``.pte`` has no place for metadata, so the spec travels beside it in ``NAME.pte.json``
(the same JSON ``ModelSpec.to_dict`` writes everywhere), with the self-check ``cnnx verify``
runs (``cnnx.core.selfcheck``) under the key the ONNX files use for it. ExecuTorch's Python
runtime takes torch tensors, so ``cnnx infer`` (which never imports torch) does not open these
files, and ``cnnx verify`` opens them here, on the torch side, with ``DeviceProgram``: the one
format whose check imports torch. An application runs them with ExecuTorch's C++, Java or Swift
runtime.

The same check also travels as ExecuTorch's own bundled program, ``NAME.bpte``: the program with
the self-check's images as a test input and the checkpoint's logits as the expected output
(``executorch.devtools.bundled_program``), so ExecuTorch's C++ ``executor_runner``, built with
bundled-program support, checks the program on a device with no Python at all. A bundled program
carries no tolerance: give its runner the self-check's (``atol`` in ``NAME.pte.json``, 1e-4), rtol 0.

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

from cnnx.core import pteio
from cnnx.core.contract import first_line, normalise
from cnnx.core.errors import ModelFileError
from cnnx.core.fileio import atomic_write
from cnnx.core.quiet import native_stderr_held, notices_held
from cnnx.core.selfcheck import KEY as SELFCHECK_KEY
from cnnx.core.selfcheck import SelfCheck
from cnnx.core.spec import Extra, ModelSpec, SpecOptions

SUFFIX = ".pte"
SPEC_SUFFIX = ".pte.json"  # the spec beside the program, and the self-check under SELFCHECK_KEY
BUNDLE_SUFFIX = ".bpte"  # ExecuTorch's bundled program: the program, the self-check's input and expected logits
COMPANIONS = (SPEC_SUFFIX, BUNDLE_SUFFIX)
NOT_SHIPPED = (BUNDLE_SUFFIX,)  # companions that check the program, not part of it: left out of its size
SELFCHECK = True  # the self-check travels in NAME.pte.json (and as NAME.bpte)
METHODS = ("xnnpack", "portable")  # tried in this order until one passes the parity gate
MAX_BATCH = 64  # images per program call: ExecuTorch plans memory for this many
INSTALL = 'pip install "cnnx[executorch]"'


def _notices_held() -> Any:
    """ExecuTorch's own imports warn (importlib.resources' read_text) and make torch log a deprecation
    notice (an Enum registered with pytree): neither is the user's to act on."""
    return notices_held(("torch.utils._pytree",), (DeprecationWarning, FutureWarning))


def missing() -> str | None:
    """Why this format cannot be made here, or None."""
    why = unavailable()
    return None if why is None else f"executorch is not installed or does not load ({why}): {INSTALL}"


def unavailable() -> str | None:
    """Why ExecuTorch does not load here (its import error's first line), or None."""
    try:
        with _notices_held():
            _imports()
    except Exception as exc:  # ImportError, or an executorch built for another torch
        return first_line(exc)[:200]
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


def bundle_path(path: Path) -> Path:
    """Where the bundled program of the program at ``path`` lies: NAME.bpte beside NAME.pte."""
    return path.parent / (path.name.removesuffix(SUFFIX) + BUNDLE_SUFFIX)


def _write_spec(spec: ModelSpec, path: Path, selfcheck: str | None = None) -> Path:
    """NAME.pte.json: the spec's fields, and the encoded self-check under its key (as in ONNX metadata)."""
    data = {**spec.to_dict(), **({SELFCHECK_KEY: selfcheck} if selfcheck is not None else {})}
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    return atomic_write(_spec_path(path), lambda f: f.write(text.encode()))


def _read_json(path: Path) -> dict[str, Any]:
    """NAME.pte.json as a JSON object; ModelFileError naming the way out when it cannot be read."""
    where = _spec_path(path)
    try:
        data = json.loads(where.read_text())
    except OSError as exc:
        raise ModelFileError(f"cannot read {where}: {exc.strerror or exc}", "export it with `cnnx export`") from None
    except ValueError as exc:
        raise ModelFileError(f"{where} is not valid JSON: {exc}", "export it again with `cnnx export`") from None
    if not isinstance(data, dict):
        raise ModelFileError(f"{where} holds no JSON object", "export it again with `cnnx export`")
    return data


def _write_bundle(path: Path, spec: ModelSpec, selfcheck: str) -> Path:
    """NAME.bpte: the program at ``path`` with the self-check as one test case of method ``forward``: its
    images normalised with ``spec`` (N, C, H, W) float32 in, the logits it must give (N, K) float32 out.
    Checked here as a device checks it (ExecuTorch's bundled-program verification, |d| <= the self-check's
    atol, rtol 0) before it is written: ModelFileError when it cannot be made or does not pass."""
    from executorch.devtools import BundledProgram
    from executorch.devtools.bundled_program.config import MethodTestCase, MethodTestSuite
    from executorch.devtools.bundled_program.serialize import serialize_from_bundled_program_to_flatbuffer

    check = SelfCheck.decode(selfcheck)
    x = torch.from_numpy(normalise(check.pixels, spec.mean, spec.std))
    case = MethodTestCase(inputs=[x], expected_outputs=[torch.from_numpy(np.array(check.target, np.float32))])
    try:
        with _notices_held():
            bundled = BundledProgram(None, [MethodTestSuite("forward", [case])], pte_file_path=str(path))
            data = serialize_from_bundled_program_to_flatbuffer(bundled)
        verify_bundle(data, check.atol)
    except Exception as exc:  # the devtools raise assertion and runtime errors of their own
        raise ModelFileError(f"ExecuTorch bundled program failed: {first_line(exc)[:300]}") from None
    return atomic_write(bundle_path(path), lambda f: f.write(data))


def verify_bundle(data: bytes, atol: float) -> None:
    """Run the test case of a bundled program's ``forward`` with ExecuTorch's bundled-program verification
    (outputs within ``atol`` of the expected ones, rtol 0); RuntimeError from ExecuTorch when one fails."""
    with _notices_held():
        from executorch.extension.pybindings.portable_lib import _load_bundled_program_from_buffer

    with native_stderr_held():  # ExecuTorch logs the mismatch it raises on
        bundle = _load_bundled_program_from_buffer(data)
        bundle.verify_result_with_bundled_expected_output("forward", 0, rtol=0.0, atol=atol)


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
        self.path = Path(path)
        pteio.check_whole(self.path)  # ExecuTorch would say only "Failed to load program, error: 0x23"
        with _notices_held():
            from executorch.runtime import Runtime

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
        return ModelSpec.from_dict(_read_json(self.path))

    def selfcheck(self) -> str | None:
        """The encoded self-check in NAME.pte.json, or None (a program exported before it existed)."""
        text = _read_json(self.path).get(SELFCHECK_KEY)
        return text if isinstance(text, str) else None

    def write_spec(self, spec: ModelSpec, selfcheck: str | None = None) -> Path:
        """Rewrite NAME.pte.json with ``spec`` and ``selfcheck`` (the one there kept when None), and with a new
        self-check NAME.bpte too; the program itself is left as checked."""
        kept = self.selfcheck() if selfcheck is None and _spec_path(self.path).is_file() else selfcheck
        _write_spec(spec, self.path, kept)
        if selfcheck is not None:
            _write_bundle(self.path, spec, selfcheck)
        return self.path


def load(path: Path, threads: int) -> LoadedPte:
    return LoadedPte(path)


class DeviceProgram:
    """A ``.pte`` as ``cnnx verify`` runs it: the surface of the edge runtime's models (``spec``, ``path``,
    ``threads``, ``metadata``, ``runtime``, ``run``) over ExecuTorch's Python runtime, which imports torch.

    ``threads``: the threads of ExecuTorch's pool (XNNPACK's), None or 0 = as ExecuTorch sets it (the
    cores it finds). ``options`` (``--mean/--std/--size``) are refused: the spec travels with the program.
    Callers check ``unavailable()`` first: without ExecuTorch this raises ImportError.
    """

    def __init__(self, path: str | Path, threads: int | None = None, options: SpecOptions | None = None) -> None:
        self.path = Path(path)
        if options is not None:
            options.refuse(self.path)
        with _notices_held(), native_stderr_held():  # the pool logs what it finds of the CPU
            from executorch.extension.pybindings import portable_lib

            if threads:  # before the program loads: XNNPACK takes the pool when its delegate is set up
                portable_lib._unsafe_reset_threadpool(int(threads))
            self.threads = int(portable_lib._threadpool_get_thread_count())
        self._loaded = LoadedPte(self.path)
        self.spec = self._loaded.spec()
        check = self._loaded.selfcheck()
        self.metadata: dict[str, str] = {SELFCHECK_KEY: check} if check is not None else {}  # what verify reads
        delegate = self.spec.extra.get(Extra.DELEGATE, "unknown")
        # what `cnnx verify` names: the ExecuTorch installed here, the delegate the program was lowered to
        self.runtime = f"ExecuTorch {_dist_version('executorch')} ({delegate} delegate; Python runtime, with torch)"
        self.input_name = "input"

    def run(self, x: np.ndarray) -> np.ndarray:
        """(N, C, H, W) float32 normalised -> (N, K) float32 logits, through ExecuTorch."""
        return self._loaded.run(x)
