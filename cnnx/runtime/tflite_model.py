"""A LiteRT flatbuffer (``.tflite`` from ``cnnx export --format tflite``) as the edge runtime runs it.

The same surface as ``cnnx.runtime.session.OnnxModel``: ``spec``, ``path``, ``threads``,
``run(x) -> (N, K) float32 logits``; opened by ``cnnx.core.tfliteio`` with the settings export's
parity gate used (LiteRT's interpreter, XNNPACK). A full-integer file (``.int8.tflite``) takes the
same float input: ``tfliteio`` quantises it and dequantises the logits with the file's own scales.
Needs ``pip install "cnnx[litert-runtime]"`` (LiteRT alone, no torch); without it, opening a file
says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cnnx.core.errors import ModelFileError
from cnnx.core.machine import physical_cores
from cnnx.core.selfcheck import KEY as SELFCHECK
from cnnx.core.spec import ModelSpec, SpecOptions
from cnnx.core.tfliteio import SELFCHECK_KEY, SPEC_KEY, open_tflite, read_metadata


class TfliteModel:
    """A loaded ``.tflite``: ``spec`` (from its metadata table) and ``run(x) -> logits``."""

    def __init__(self, path: str | Path, threads: int | None = None, options: SpecOptions | None = None) -> None:
        self.path = Path(path)
        if threads is not None and threads < 0:
            raise ModelFileError(f"threads must be 0 (automatic) or more, got {threads}")
        if not self.path.is_file():
            raise ModelFileError(f"no model file at {self.path}", "give the path of an exported .tflite file")
        self.threads = physical_cores() if not threads else int(threads)
        meta = read_metadata(self.path.read_bytes(), self.path)
        if SPEC_KEY not in meta:
            raise ModelFileError(
                f"{self.path} carries no cnnx spec (metadata {SPEC_KEY})",
                "export it with `cnnx export --format tflite`",
            )
        if options is not None:
            options.refuse(self.path)
        try:
            self.spec = ModelSpec.from_dict(json.loads(meta[SPEC_KEY]))
        except ValueError as exc:
            raise ModelFileError(f"{self.path}: its cnnx spec is not valid JSON: {exc}") from None
        self.interpreter, self._run = open_tflite(self.path, self.threads)
        from importlib.metadata import version

        precision = np.dtype(self.interpreter.get_input_details()[0]["dtype"]).name.replace("float32", "f32")
        # what `cnnx verify` names
        self.runtime = f"ai-edge-litert {version('ai-edge-litert')} (CPU, XNNPACK, {precision})"
        self.input_name = "input"  # the converter names its input serving_default_args_0; the server's name
        check = meta.get(SELFCHECK_KEY)  # what `cnnx verify` reads
        self.metadata: dict[str, str] = {SELFCHECK: check.decode()} if check is not None else {}

    def run(self, x: np.ndarray) -> np.ndarray:
        """float32 (N, C, H, W) normalised -> float32 (N, num_classes) logits."""
        return self._run(x)
