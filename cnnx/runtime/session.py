"""An onnxruntime session for a cnnx ONNX file: explicit threads, the spec read from the file.

Threads default to the machine's physical cores with spinning off: onnxruntime's
workers otherwise busy-wait after every run, which on a small device steals the
CPU that decoding the next images needs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnx.core.contract import OUTPUT_NAME, first_line, is_torch_file, is_torchscript
from cnnx.core.errors import ModelFileError, NoSpecError
from cnnx.core.machine import physical_cores
from cnnx.core.onnxio import open_session
from cnnx.core.spec import ONNX_PREFIX, ModelSpec, SpecOptions


def _torch_file_error(path: Path) -> ModelFileError:
    """What to do with a PyTorch file given where an exported model belongs: a checkpoint is exported;
    a TorchScript file already is an export, of a format this runtime does not run."""
    if not is_torchscript(path):
        return ModelFileError(
            f"{path} is a PyTorch file, not an ONNX model",
            f"export it first: cnnx export {path}, then give the .onnx file it writes",
        )
    beside = path.with_suffix(".onnx")
    way_out = (
        f"give {beside}, exported beside it"
        if beside.is_file()
        else "export the checkpoint it was made from to ONNX, e.g. cnnx export RUN/best.pt --format onnx"
    )
    return ModelFileError(
        f"{path} is a TorchScript export; cnnx infer, verify and serve run ONNX (.onnx, .ort), OpenVINO (.xml) "
        "and LiteRT (.tflite) files",
        way_out,
    )


class OnnxModel:
    """A loaded model: ``spec`` and ``run(x) -> logits``.

    ``options``: what to use for a file that carries no cnnx spec (``--mean/--std/--size``);
    a file that carries one refuses them, so the spec stays the single source.
    """

    def __init__(self, path: str | Path, threads: int | None = None, options: SpecOptions | None = None) -> None:
        self.path = Path(path)
        if threads is not None and threads < 0:
            raise ModelFileError(f"threads must be 0 (automatic) or more, got {threads}")
        if not self.path.is_file():
            raise ModelFileError(f"no model file at {self.path}", "give the path of an exported .onnx file")
        if is_torch_file(self.path):
            raise _torch_file_error(self.path)
        self.threads = physical_cores() if not threads else int(threads)
        try:
            self.session = open_session(self.path, self.threads)
        except ModelFileError:
            raise
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            first = first_line(exc)
            raise ModelFileError(
                f"{self.path} is not a usable ONNX model: {first[:300]}",
                "re-export it with `cnnx export`",
            ) from None
        self.spec = self._read_spec(options)
        self._check_signature()

    def _read_spec(self, options: SpecOptions | None) -> ModelSpec:
        meta = self.session.get_modelmeta().custom_metadata_map
        given = options is not None and options.given()
        if any(k.startswith(ONNX_PREFIX) for k in meta):
            if options is not None:
                options.refuse(self.path)
            try:
                return ModelSpec.from_onnx_metadata(meta)
            except ModelFileError as exc:
                raise ModelFileError(f"{self.path}: {exc.message}", exc.hint) from None
        if not given:
            raise NoSpecError(
                f"{self.path} carries no cnnx spec, so cnnx does not know how to prepare images for it",
                "give --mean, --std and --size (and --classes), or export it with `cnnx export`",
            )
        assert options is not None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shape = inputs[0].shape if len(inputs) == 1 else []
        out = next((o for o in outputs if o.name == OUTPUT_NAME), outputs[0]) if outputs else None
        channels = shape[1] if len(shape) == 4 and isinstance(shape[1], int) else None
        fixed = (shape[2], shape[3]) if len(shape) == 4 and all(isinstance(d, int) for d in shape[2:]) else None
        width = out.shape[-1] if out is not None and len(out.shape) == 2 and isinstance(out.shape[-1], int) else None
        return options.to_spec(channels, width, str(self.path), fixed)  # a graph of one image size needs no --size

    def _check_signature(self) -> None:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            raise ModelFileError(f"{self.path} has {len(inputs)} inputs; a cnnx classifier has one (N, C, H, W)")
        inp = inputs[0]
        want = list(self.spec.input_shape)
        if len(inp.shape) != 4:
            raise ModelFileError(
                f"{self.path}: input {inp.name!r} has rank {len(inp.shape)} {inp.shape}; "
                f"expected 4, (batch, {', '.join(map(str, want))})",
                "export the model with `cnnx export`",
            )
        fixed = [d for d in inp.shape[1:]]
        if any(isinstance(d, int) and d != s for d, s in zip(fixed, want, strict=False)):
            raise ModelFileError(f"{self.path}: input shape {inp.shape} disagrees with the spec's {want}")
        if inp.type != "tensor(float)":
            raise ModelFileError(f"{self.path}: input {inp.name!r} is {inp.type}, expected tensor(float)")
        out = next((o for o in outputs if o.name == OUTPUT_NAME), outputs[0])
        width = out.shape[-1] if out.shape else None
        if len(out.shape) != 2 or (isinstance(width, int) and width != self.spec.num_classes):
            raise ModelFileError(
                f"{self.path}: output {out.name!r} has shape {out.shape}; "
                f"expected (batch, {self.spec.num_classes}) for {self.spec.num_classes} classes"
            )
        self.input_name, self.output_name = inp.name, out.name
        # a file exported with a fixed batch size can only run that many images at once
        self.fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None

    def run(self, x: np.ndarray) -> np.ndarray:
        """float32 (N, C, H, W) normalised -> float32 (N, num_classes) logits."""
        if self.fixed_batch and len(x) != self.fixed_batch:
            chunks = []
            for i in range(0, len(x), self.fixed_batch):
                part = x[i : i + self.fixed_batch]
                pad = self.fixed_batch - len(part)
                if pad:
                    part = np.concatenate([part, np.zeros((pad, *part.shape[1:]), dtype=part.dtype)])
                chunks.append(self._run(part)[: self.fixed_batch - pad])
            return np.concatenate(chunks)
        return self._run(x)

    def _run(self, x: np.ndarray) -> np.ndarray:
        try:
            (logits,) = self.session.run([self.output_name], {self.input_name: np.ascontiguousarray(x, np.float32)})
        except Exception as exc:
            first = first_line(exc)
            raise ModelFileError(f"{self.path} failed on a batch of shape {x.shape}: {first[:300]}") from None
        return np.asarray(logits, dtype=np.float32)
