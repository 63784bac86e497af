"""How cnnx opens every OpenVINO IR file (``.xml`` + ``.bin``): the runtime ``cnnx infer`` uses, and
export's parity gate, with the same settings. Stdlib at import time; openvino loads when a file is
opened, and its absence is a ModelFileError naming the extra that installs it.

Every call into OpenVINO runs inside ``signals_held``. OpenVINO's CPU plugin (2026.4) gives the
thread that compiles a model an alternate signal stack of its own (``sigaltstack``) and frees it
with the model; CPython's handlers run on the alternate stack, so after a model was compiled
twice in one process (export's gate does) the next Ctrl-C, SIGTERM or SIGALRM jumped onto freed
memory and the process died with SIGSEGV. ``signals_held`` puts the thread's alternate stack back
as it was after each call, and holds the asynchronous signals meanwhile, so the worker threads
OpenVINO starts inherit a mask that leaves every signal to the Python thread.
"""

from __future__ import annotations

import ctypes
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from cnnx.core.contract import first_line
from cnnx.core.errors import ModelFileError

INSTALL = 'pip install "cnnx[openvino]"'
RT_SPEC = ["cnnx", "spec"]  # rt_info path of the spec: JSON of ModelSpec.to_dict()
RT_SELFCHECK = ["cnnx", "selfcheck"]  # rt_info path of the encoded self-check (cnnx.core.selfcheck)


_HELD = ("SIGINT", "SIGTERM", "SIGHUP", "SIGALRM", "SIGUSR1", "SIGUSR2", "SIGCHLD", "SIGPIPE")


class _Stack(ctypes.Structure):
    """POSIX ``stack_t`` as Linux lays it out: the alternate signal stack of a thread."""

    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


def _sigaltstack() -> Callable[..., int] | None:
    """libc's ``sigaltstack`` on Linux, else None (the fault was seen there; elsewhere nothing is touched)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).sigaltstack
    except (OSError, AttributeError):
        return None


@contextmanager
def signals_held() -> Iterator[None]:
    """Block the asynchronous signals in this thread (and in threads started meanwhile) and keep its
    alternate signal stack; on leaving, both are as they were, and a signal that came meanwhile is
    delivered then."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no signal masks, no alternate stacks
        yield
        return
    altstack, saved = _sigaltstack(), _Stack()
    if altstack is not None:
        altstack(None, ctypes.byref(saved))
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {getattr(signal, n) for n in _HELD if hasattr(signal, n)})
    try:
        yield
    finally:
        if altstack is not None:
            altstack(ctypes.byref(saved), None)
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def read_ir(path: str | Path) -> tuple[Any, Any]:
    """(openvino.Core, openvino.Model) of the IR file ``path``, read but not compiled (what ``cnnx inspect``
    needs). Raises ModelFileError when openvino is missing, the weights file is not beside it, or the
    file cannot be read."""
    path = Path(path)
    try:
        import openvino as ov
    except ImportError:
        raise ModelFileError(f"{path} is an OpenVINO model and openvino is not installed", INSTALL) from None
    if not path.with_suffix(".bin").is_file():
        raise ModelFileError(f"{path} has no weights file {path.with_suffix('.bin').name} beside it")
    try:
        with signals_held():
            core = ov.Core()
            return core, core.read_model(str(path))
    except Exception as exc:  # openvino raises RuntimeError subclasses of its own
        raise _unusable(path, exc) from None


def _unusable(path: Path, exc: Exception) -> ModelFileError:
    """OpenVINO's error as one line: its cause, the message's last line (the first names only the
    source file that raised it: "Exception from src/inference/src/cpp/core.cpp:84:")."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    cause = lines[-1] if lines else first_line(exc)
    return ModelFileError(
        f"{path} is not a usable OpenVINO model: {cause[:300]}",
        "export it again, the .xml with its .bin: cnnx export RUN --format openvino",
    )


def rt_text(model: Any, key: list[str]) -> str | None:
    """The text the openvino.Model ``model`` keeps at rt_info path ``key`` (e.g. ``RT_SPEC``), or None."""
    return model.get_rt_info(key).astype(str) if model.has_rt_info(key) else None


def open_openvino(path: str | Path, threads: int) -> tuple[Any, Callable[[np.ndarray], np.ndarray]]:
    """(openvino.Model, run) of the IR file ``path`` compiled for the CPU; ``run(x)`` is the first
    output for the input batch ``x``, computed with signals held.

    ``threads``: the CPU plugin's inference threads (0 = its own choice). Inference precision is
    f32: OpenVINO's CPU plugin would otherwise run in bf16 on CPUs that have it, and the file was
    checked in f32. Raises ModelFileError when openvino is missing or the file cannot be read.
    """
    core, model = read_ir(path)
    try:
        with signals_held():
            config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": int(threads)}
            compiled = core.compile_model(model, "CPU", config)
    except Exception as exc:  # openvino raises RuntimeError subclasses of its own
        raise _unusable(Path(path), exc) from None

    def run(x: np.ndarray) -> np.ndarray:
        with signals_held():
            return compiled(x)[0]

    return model, run
