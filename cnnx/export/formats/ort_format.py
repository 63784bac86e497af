"""ORT export: the fp32 graph in onnxruntime's own flatbuffer format, for minimal onnxruntime builds.

Made with onnxruntime's own tool (``onnxruntime.tools.convert_onnx_models_to_ort``, the
"fixed" optimisation style at its default level): the graph is optimised once, at
conversion, and saved as ``.ort``; the operators it needs are written beside it as
``<stem>.required_operators.config``, the file a reduced-size onnxruntime build takes
(``build.py --minimal_build --include_ops_by_config``). The tool leaves out layout
transforms specific to one CPU family, so the file runs on x86 and ARM alike. A full
onnxruntime loads ``.ort`` files too, so ``cnnx infer`` and the parity gate open it with the
same session code as ``.onnx``. The spec and the self-check travel in the model metadata,
as in ONNX files.

The ORT file cannot be edited in place, so writing a new spec converts again from the
ONNX file it was made from (kept in the staging folder beside it, never shipped) and
checks that the new file computes exactly what the checked one did.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from torch import nn

from cnnx.core.contract import first_line
from cnnx.core.errors import ModelFileError
from cnnx.core.fileio import atomic_write
from cnnx.core.spec import Extra, ModelSpec
from cnnx.export.formats import onnx_fp32 as onnx_format

SUFFIX = ".ort"
CONFIG_SUFFIX = ".required_operators.config"
COMPANIONS = (CONFIG_SUFFIX,)  # written beside the model, shipped with it
METHODS = ("fixed",)  # onnxruntime's "fixed" optimisation style: optimised once, at conversion
SELFCHECK = True  # the file carries a self-check (cnnx.core.selfcheck) for `cnnx verify`
REQUIRES = "onnx"  # converts the fp32 file that format wrote
# made from the fp32 graph before its channels were padded (cnnx.export.fold.pad_channels): its kernels
# keep plain NCHW, where the zero filters are only extra work
UNPADDED = True


def missing() -> str | None:
    """Why this format cannot be made here, or None (the converter ships with onnxruntime; it needs flatbuffers)."""
    try:
        import flatbuffers  # noqa: F401
        from onnxruntime.tools import convert_onnx_models_to_ort  # noqa: F401
    except ImportError as exc:
        return f"onnxruntime's ORT converter cannot be imported ({first_line(exc)}): pip install flatbuffers"
    return None


def _source_of(path: Path) -> Path:
    """The ONNX file ``path`` was converted from, kept beside it (hidden) until export moves the results."""
    return path.parent / f".{path.name}.onnx"


def _convert(source: Path, path: Path) -> None:
    """``source`` (.onnx) -> ``path`` (.ort) and its operator config beside it, quietly."""
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    with tempfile.TemporaryDirectory(prefix=".cnnx-ort-", dir=path.parent) as tmp:
        model = Path(tmp) / f"{path.name.removesuffix(SUFFIX)}.onnx"
        shutil.copyfile(source, model)
        logger = logging.getLogger("ort_format_model.utils")
        level = logger.level
        logger.setLevel(logging.ERROR)  # it logs where it wrote the config at INFO
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # it prints every step
                convert_onnx_models_to_ort(
                    model, output_dir=Path(tmp) / "out", optimization_styles=[OptimizationStyle.Fixed]
                )
        except Exception as exc:  # onnxruntime raises its own types for graphs it cannot convert
            raise ModelFileError(f"onnxruntime's ORT conversion failed: {first_line(exc)[:300]}") from None
        finally:
            logger.setLevel(level)
        made = sorted((Path(tmp) / "out").glob(f"*{SUFFIX}"))
        configs = sorted((Path(tmp) / "out").glob(f"*{CONFIG_SUFFIX}"))
        if len(made) != 1 or len(configs) != 1:
            raise ModelFileError(f"onnxruntime's ORT conversion made {len(made)} models and {len(configs)} configs")
        os.replace(made[0], path)
        # the tool names the model it read by its full path, here a temporary one: name the shipped file
        lines = configs[0].read_text().splitlines(keepends=True)
        text = "".join(f"# - {path.name}\n" if line.startswith("# - ") else line for line in lines)
        atomic_write(config_of(path), lambda f: f.write(text.encode()))


def config_of(path: Path) -> Path:
    """The operator config written beside the ``.ort`` file ``path``."""
    return path.parent / (path.name.removesuffix(SUFFIX) + CONFIG_SUFFIX)


def _write(proto: onnx.ModelProto, spec: ModelSpec, path: Path, selfcheck: str | None) -> Path:
    source = _source_of(path)
    onnx_format.write_model(proto, spec, source, onnx_format.selfcheck_props(selfcheck))
    _convert(source, path)
    return path


def export(
    model: nn.Module,
    spec: ModelSpec,
    path: Path,
    *,
    built: dict[str, Path] | None = None,
    **_: Any,
) -> Path:
    """Convert the fp32 ONNX file in ``built["onnx"]`` to ``path`` (.ort) and its operator config."""
    source = (built or {}).get(REQUIRES)
    if source is None:
        raise ModelFileError("ORT conversion needs the fp32 ONNX export")
    import onnxruntime as ort

    proto = onnx.load(str(source))
    made = {Extra.FORMAT: "ort", Extra.PRECISION: "fp32", Extra.OPSET: onnx_format.opset_of(proto)}
    made_spec = onnx_format.made_from(spec, proto, made, onnxruntime=ort.__version__)
    return _write(proto, made_spec, Path(path), None)


class LoadedOrt(onnx_format.LoadedOnnx):
    """An ORT file loaded back in onnxruntime, as ``cnnx infer`` opens it."""

    def __init__(self, path: Path, threads: int) -> None:
        super().__init__(path, threads)
        self.threads = threads

    def write_spec(self, spec: ModelSpec, selfcheck: str | None = None) -> Path:
        """Convert again from the kept ONNX source with ``spec`` (and ``selfcheck``, when given); the result
        must compute what was checked."""
        source = _source_of(self.path)
        if not source.is_file():
            raise ModelFileError(f"the ONNX file {self.path.name} was made from is gone; export it again")
        proto = onnx.load(str(source))
        kept = next((p.value for p in proto.metadata_props if p.key == onnx_format.SELFCHECK_KEY), None)
        probe = np.linspace(-2, 2, 2 * int(np.prod(spec.input_shape)), dtype=np.float32)
        probe = probe.reshape(2, *spec.input_shape)
        before = self.run(probe)
        _write(proto, spec, self.path, selfcheck or kept)
        self.session = onnx_format.LoadedOnnx(self.path, self.threads).session
        if not np.array_equal(self.run(probe), before):
            raise ModelFileError(f"rewriting the metadata of {self.path.name} changed what it computes")
        return self.path


def load(path: Path, threads: int) -> LoadedOrt:
    return LoadedOrt(path, threads)
