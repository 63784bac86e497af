"""How cnnx opens an ONNX file in onnxruntime, in one place.

The edge runtime (``cnnx infer``/``eval``), export's parity gate, ``cnnx inspect`` and
``cnnx bench`` all open sessions here, so every file is checked for external data that
points outside its folder before onnxruntime sees it, and is timed exactly as the device
will run it. Stdlib at import time (onnxruntime loads when a session is made), so the
torch side can use it without importing the runtime package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnx.errors import ModelFileError
from cnnx.onnxfile import check_external_data


def session_options(threads: int) -> Any:
    """onnxruntime SessionOptions: ``threads`` intra-op threads (0 = onnxruntime's choice), no spinning."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1  # one small graph, run node after node
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # idle workers sleep instead of spinning: a small device has other work for its cores
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 3  # errors only: warnings about unused initialisers are noise here
    return so


def open_session(path: str | Path, threads: int) -> Any:
    """An onnxruntime InferenceSession on the CPU, opened by path (external data is found beside the file).

    Raises ModelFileError for a file it cannot read or whose external data lies outside its
    folder, and onnxruntime's own exceptions for the rest; callers name the file in their error.
    """
    import onnxruntime as ort

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    check_external_data(path, data)
    return ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
