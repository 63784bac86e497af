"""FP16 export: the fp32 ONNX graph with float16 weights and activations, run by onnxruntime.

Made with onnxruntime's own converter (``onnxruntime.transformers.float16``), which
ships with onnxruntime: no new dependency. ``keep_io_types`` keeps the contract of every
cnnx ONNX file: input ``input`` float32 (N, C, H, W) normalised, output ``logits``
float32 (N, K); a Cast at each end moves to and from float16 inside the graph. The file
is half the size of the fp32 one; on an x86 CPU it runs about as fast as fp32 (export's
latency table, ``cnnx bench``), so it is for size and for fp16-capable devices.

Logits move by about 1e-3 of their range, so its gate is on decisions: top-1 agreement
with the checkpoint and accuracy (``cnnx.export.parity.GATES["onnx-fp16"]``).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import onnx
from torch import nn

from cnnx.core.contract import first_line
from cnnx.core.errors import ModelFileError
from cnnx.core.spec import Extra, ModelSpec
from cnnx.export.formats import onnx_fp32 as onnx_format

SUFFIX = ".fp16.onnx"
METHODS = ("keep-io",)  # float16 inside, float32 input and output
SELFCHECK = True  # the file carries a self-check (cnnx.core.selfcheck) for `cnnx verify`
REQUIRES = "onnx"  # converts the fp32 file that format wrote


def missing() -> str | None:
    """Why this format cannot be made here, or None (the converter ships with onnxruntime)."""
    try:
        from onnxruntime.transformers import float16  # noqa: F401
    except ImportError as exc:
        return f"onnxruntime's float16 converter cannot be imported ({first_line(exc)})"
    return None


def _convert(source: Path) -> onnx.ModelProto:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    root = logging.getLogger()
    level = root.level
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root.setLevel(logging.ERROR)  # the converter logs its clamping of tiny weights at WARNING
        try:
            return convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
        except Exception as exc:  # the converter raises assorted errors for graphs it cannot handle
            raise ModelFileError(f"onnxruntime's float16 conversion failed: {first_line(exc)[:300]}") from None
        finally:
            root.setLevel(level)


def _sort_nodes(graph: onnx.GraphProto) -> None:
    """Put the nodes in an order where each runs after the nodes that make its inputs.

    The converter appends the Cast that turns the float32 input into float16 at the end of the
    node list; onnxruntime does not mind, but the ONNX standard (and ``onnx.checker``) asks for
    topological order. Kahn's algorithm, stable: nodes keep their order where they can.
    """
    made = {name for node in graph.node for name in node.output}
    pending = list(graph.node)
    ready: set[str] = set()
    ordered: list[onnx.NodeProto] = []
    while pending:
        # an input nobody in the graph makes is a graph input or an initializer: available from the start
        runnable = [n for n in pending if all(i == "" or i not in made or i in ready for i in n.input)]
        if not runnable:
            raise ModelFileError("the float16 graph has a cycle")
        for node in runnable:
            ready.update(node.output)
        ordered += runnable
        pending = [n for n in pending if all(n is not r for r in runnable)]
    del graph.node[:]
    graph.node.extend(ordered)


def export(
    model: nn.Module,
    spec: ModelSpec,
    path: Path,
    *,
    built: dict[str, Path] | None = None,
    **_: Any,
) -> Path:
    """Convert the fp32 ONNX file in ``built["onnx"]`` to float16 inside, float32 at the edges, into ``path``."""
    source = (built or {}).get(REQUIRES)
    if source is None:
        raise ModelFileError("fp16 conversion needs the fp32 ONNX export")
    proto = _convert(Path(source))
    _sort_nodes(proto.graph)
    onnx_format.name_batch_axis(proto)
    made = {Extra.FORMAT: "onnx", Extra.PRECISION: "fp16", Extra.OPSET: onnx_format.opset_of(proto)}
    return onnx_format.write_model(proto, onnx_format.made_from(spec, proto, made), path)


load = onnx_format.load
