"""An OpenVINO IR file (``.xml`` + ``.bin`` from ``cnnx export --format openvino``) as the edge runtime runs it.

The same surface as ``cnnx.runtime.session.OnnxModel``: ``spec``, ``path``, ``threads``,
``run(x) -> (N, K) float32 logits``; opened by ``cnnx.core.openvinoio`` with the settings export's
parity gate used. Needs ``pip install "cnnx[openvino]"``; without it, opening a file says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cnnx.core.errors import ModelFileError
from cnnx.core.machine import physical_cores
from cnnx.core.openvinoio import RT_SELFCHECK, RT_SPEC, open_openvino, rt_text
from cnnx.core.selfcheck import KEY as SELFCHECK_KEY
from cnnx.core.spec import ModelSpec, SpecOptions


class OpenVinoModel:
    """A loaded OpenVINO model: ``spec`` (from its rt_info) and ``run(x) -> logits``."""

    def __init__(self, path: str | Path, threads: int | None = None, options: SpecOptions | None = None) -> None:
        self.path = Path(path)
        if threads is not None and threads < 0:
            raise ModelFileError(f"threads must be 0 (automatic) or more, got {threads}")
        if not self.path.is_file():
            raise ModelFileError(f"no model file at {self.path}", "give the path of an exported .xml file")
        self.threads = physical_cores() if not threads else int(threads)
        self.model, self._run = open_openvino(self.path, self.threads)
        import openvino  # loaded by open_openvino

        self.runtime = f"openvino {openvino.__version__.split('-')[0]} (CPU, f32)"  # what `cnnx verify` names
        text = rt_text(self.model, RT_SPEC)
        if text is None:
            raise ModelFileError(
                f"{self.path} carries no cnnx spec (rt_info cnnx/spec)",
                "export it with `cnnx export --format openvino`",
            )
        if options is not None:
            options.refuse(self.path)
        try:
            self.spec = ModelSpec.from_dict(json.loads(text))
        except ValueError as exc:
            raise ModelFileError(f"{self.path}: its cnnx spec is not valid JSON: {exc}") from None
        names = self.model.inputs[0].get_names() if len(self.model.inputs) == 1 else set()
        self.input_name = sorted(names)[0] if names else "input"
        check = rt_text(self.model, RT_SELFCHECK)
        self.metadata = {SELFCHECK_KEY: check} if check is not None else {}  # what `cnnx verify` reads

    def run(self, x: np.ndarray) -> np.ndarray:
        """float32 (N, C, H, W) normalised -> float32 (N, num_classes) logits."""
        try:
            logits = self._run(np.ascontiguousarray(x, np.float32))
        except Exception as exc:  # openvino raises RuntimeError subclasses of its own
            raise ModelFileError(f"{self.path} failed on a batch of shape {x.shape}: {str(exc)[:300]}") from None
        return np.asarray(logits, dtype=np.float32)
