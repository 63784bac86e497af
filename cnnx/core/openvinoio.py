"""How cnnx opens every OpenVINO IR file (``.xml`` + ``.bin``): the runtime ``cnnx infer`` uses, and
export's parity gate, with the same settings. Stdlib at import time; openvino loads when a file is
opened, and its absence is a ModelFileError naming the extra that installs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnx.core.contract import first_line
from cnnx.core.errors import ModelFileError

INSTALL = 'pip install "cnnx[openvino]"'
RT_SPEC = ["cnnx", "spec"]  # rt_info path of the spec: JSON of ModelSpec.to_dict()
RT_SELFCHECK = ["cnnx", "selfcheck"]  # rt_info path of the encoded self-check (cnnx.core.selfcheck)


def open_openvino(path: str | Path, threads: int) -> tuple[Any, Any]:
    """(openvino.Model, CompiledModel on the CPU) of the IR file ``path``.

    ``threads``: the CPU plugin's inference threads (0 = its own choice). Inference precision is
    f32: OpenVINO's CPU plugin would otherwise run in bf16 on CPUs that have it, and the file was
    checked in f32. Raises ModelFileError when openvino is missing or the file cannot be read.
    """
    path = Path(path)
    try:
        import openvino as ov
    except ImportError:
        raise ModelFileError(f"{path} is an OpenVINO model and openvino is not installed", INSTALL) from None
    if not path.with_suffix(".bin").is_file():
        raise ModelFileError(f"{path} has no weights file {path.with_suffix('.bin').name} beside it")
    try:
        core = ov.Core()
        model = core.read_model(str(path))
        config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": int(threads)}
        return model, core.compile_model(model, "CPU", config)
    except Exception as exc:  # openvino raises RuntimeError subclasses of its own
        raise ModelFileError(f"{path} is not a usable OpenVINO model: {first_line(exc)[:300]}") from None
