"""How cnnx reads, writes and runs every LiteRT (TensorFlow Lite) flatbuffer (``.tflite``): the edge
runtime ``cnnx infer`` uses, and export's parity gate, with the same settings. Stdlib and numpy at
import time; ``ai_edge_litert`` (LiteRT's interpreter, torch-free) loads when a file is opened, and
its absence is a ModelFileError naming the extra that installs it.

The spec lives in the file itself, in the model's ``metadata`` table (name ``cnnx.spec``, its bytes
the JSON ``ModelSpec.to_dict`` writes everywhere), where TFLite keeps what the converter notes
about a model (``min_runtime_version``). Writing it repacks the flatbuffer with the schema's own
Python bindings (``ai_edge_litert.schema_py_generated``), every buffer 16-byte aligned as the
converter writes them; the graph and its weights are copied unchanged.

A full-integer file (``cnnx export --int8``: int8 input and output tensors, as TensorFlow Lite
Micro needs) is run the same way: ``run`` quantises the normalised float input with the input
tensor's scale and zero point, and dequantises the output with the output tensor's, so callers
see float32 in and float32 logits out whatever the file holds.

The converter writes a fixed batch of one (it cannot lower cnnx's flatten for a symbolic batch;
asked for one, it bakes the example's batch into every shape after the input). ``with_metadata``
frees it (``free_batch``) where the graph allows: the input and every activation get the shape
signature ``[-1, ...]`` and every RESHAPE's constant shape ``[1, ...]`` becomes ``[-1, ...]``, so
LiteRT's ``resize_tensor_input`` runs ``n`` images per invoke (XNNPACK included). It does so only
when every op is one that works row by row (``ROW_WISE``; a transpose, reduction or concatenation
that keeps axis 0 apart) and every activation leads with the batch; otherwise the file keeps its
fixed batch. ``run`` feeds a batch-free file pieces of up to ``CHUNK`` images, resizing only when
the piece size changes; a fixed-batch file gets pieces of its own batch size, the last one padded
with zeros (every row is computed on its own: eval-mode batch norm, no cross-row op).
"""

from __future__ import annotations

import copy
import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from cnnx.core.contract import first_line
from cnnx.core.errors import ModelFileError
from cnnx.core.quiet import native_stderr_held

INSTALL = 'pip install "cnnx[litert-runtime]"'
SPEC_KEY = "cnnx.spec"  # metadata name of the spec: JSON of ModelSpec.to_dict()
SELFCHECK_KEY = "cnnx.selfcheck"  # metadata name of the self-check `cnnx verify` runs (cnnx.core.selfcheck)
IDENTIFIER = b"TFL3"  # the flatbuffer's file identifier (bytes 4..8)
ALIGN = 16  # buffer alignment the converter keeps, and the repack keeps
FLATBUFFER_LIMIT = 2**31  # bytes a flatbuffer can hold; larger files keep their weights past it
CHUNK = 64  # images per invoke at most for a batch-free file: 16, 64, 256 measured; 256 slowed fp32 by 10%
# ops that compute each row of the batch on its own and carry no batch size in their options or operands
# (RESHAPE, TRANSPOSE, MEAN, SUM and CONCATENATION are checked one by one in _free_batch)
ROW_WISE = frozenset(
    {
        *("ABS", "ADD", "AVERAGE_POOL_2D", "CONV_2D", "DEPTHWISE_CONV_2D", "DEQUANTIZE", "DIV", "ELU", "EXP"),
        *("FULLY_CONNECTED", "GELU", "HARD_SWISH", "LEAKY_RELU", "LOGISTIC", "LOG_SOFTMAX", "MAXIMUM"),
        *("MAX_POOL_2D", "MINIMUM", "MUL", "NEG", "PRELU", "QUANTIZE", "RELU", "RELU6", "RELU_N1_TO_1", "RSQRT"),
        *("SOFTMAX", "SQRT", "SQUARE", "SUB", "TANH"),
    }
)


def _absent(where: Path | str) -> ModelFileError:
    return ModelFileError(f"{where} is a LiteRT (.tflite) model and ai-edge-litert is not installed", INSTALL)


def _schema(where: Path | str) -> Any:
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError:
        raise _absent(where) from None
    return schema_py_generated


def _model(data: bytes, where: Path | str) -> Any:
    if data[4:8] != IDENTIFIER:
        raise ModelFileError(f"{where} is not a TFLite flatbuffer (no {IDENTIFIER.decode()} identifier)")
    return _schema(where).Model.GetRootAsModel(data, 0)


@contextmanager
def _reading(where: Path | str) -> Iterator[None]:
    """A cut-short or corrupt flatbuffer fails deep in the generated readers (struct.error, IndexError,
    None where a table should be): one ModelFileError instead."""
    try:
        yield
    except ModelFileError:
        raise
    except Exception as exc:
        raise ModelFileError(
            f"{where} is not a readable TFLite flatbuffer (cut short or corrupt: {first_line(exc)[:200]})",
            "export it again with `cnnx export --format tflite`",
        ) from None


def read_metadata(data: bytes, where: Path | str = "the file") -> dict[str, bytes]:
    """The file's ``metadata`` table: name -> the bytes of the buffer it points at."""
    out = {}
    with _reading(where):
        model = _model(data, where)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            buffer = model.Buffers(entry.Buffer())
            out[(entry.Name() or b"").decode()] = buffer.DataAsNumpy().tobytes() if buffer.DataLength() else b""
    return out


def signature(data: bytes, where: Path | str = "the file") -> dict[str, list[dict[str, Any]]]:
    """Subgraph 0's inputs and outputs: name, shape (the batch fixed), element type."""
    with _reading(where):
        return _signature(_schema(where), _model(data, where))


def _signature(schema: Any, model: Any) -> dict[str, list[dict[str, Any]]]:
    graph = model.Subgraphs(0)
    types = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}

    def describe(indices: np.ndarray) -> list[dict[str, Any]]:
        out = []
        for t in (graph.Tensors(int(i)) for i in indices):
            shape = [int(d) for d in t.ShapeAsNumpy()]
            d: dict[str, Any] = {"name": (t.Name() or b"").decode(), "shape": shape, "type": types[t.Type()]}
            q = t.Quantization()
            if q is not None and q.ScaleLength() == 1:  # an integer tensor: real = scale * (q - zero_point)
                d["quantization"] = {"scale": float(q.Scale(0)), "zero_point": int(q.ZeroPoint(0))}
            out.append(d)
        return out

    return {"inputs": describe(graph.InputsAsNumpy()), "outputs": describe(graph.OutputsAsNumpy())}


def with_metadata(
    data: bytes,
    entries: dict[str, bytes],
    where: Path | str = "the file",
    rename: Callable[[str], str] | None = None,
    free_batch: bool = False,
) -> bytes:
    """``data`` repacked with ``entries`` in its metadata table (an entry of the same name replaced), every
    tensor's name passed through ``rename`` where one is given, and with ``free_batch`` its batch axis made
    resizable where the graph allows (see the module's notes; otherwise left as it is)."""
    schema = _schema(where)
    with _reading(where):
        model = schema.ModelT.InitFromObj(_model(data, where))
    if free_batch:
        _free_batch(schema, model)
    if rename is not None:
        for graph in model.subgraphs or []:
            for tensor in graph.tensors or []:
                tensor.name = rename((tensor.name or b"").decode()).encode()
    if any(b.offset > 1 for b in model.buffers or []):  # weights stored past the flatbuffer, at offsets in the file
        if len(data) >= FLATBUFFER_LIMIT:
            raise ModelFileError(f"{where} keeps its weights outside the flatbuffer; cnnx cannot add metadata to it")
        for b in model.buffers:  # ai-edge-quantizer writes models with 256 KB of weights or more this way
            if b.offset > 1:
                b.data, b.offset, b.size = np.frombuffer(data, np.uint8, b.size, b.offset), 0, 0
    model.buffers = [_aligned(schema, b) for b in model.buffers or []]
    model.metadata = [m for m in model.metadata or [] if (m.name or b"").decode() not in entries]
    for name, value in entries.items():
        model.buffers.append(_aligned(schema, None, np.frombuffer(value, np.uint8)))
        entry = schema.MetadataT()
        entry.name, entry.buffer = name, len(model.buffers) - 1
        model.metadata.append(entry)
    import flatbuffers

    builder = flatbuffers.Builder(len(data) + sum(len(v) for v in entries.values()) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=IDENTIFIER)
    return bytes(builder.Output())


def _free_batch(schema: Any, model: Any) -> bool:
    """Give subgraph 0 of ``model`` (a ``ModelT``, changed in place) a batch axis of any size, if its graph
    takes a batch of one and every op works row by row; True when it did, False (nothing changed) otherwise."""
    if len(model.subgraphs or []) != 1:
        return False
    graph, buffers = model.subgraphs[0], model.buffers or []
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}

    def constant(i: int) -> np.ndarray | None:  # an int32 operand's values, or None if it is not a constant
        t = graph.tensors[i]
        data = buffers[t.buffer].data if 0 <= t.buffer < len(buffers) else None
        if data is None or not len(data) or t.type != schema.TensorType.INT32:
            return None
        return np.frombuffer(np.asarray(data, np.uint8).tobytes(), np.int32)

    activations = {int(i) for i in graph.inputs} | {int(i) for op in graph.operators for i in op.outputs}
    if any(graph.tensors[i].shape is None or list(graph.tensors[i].shape[:1]) != [1] for i in activations):
        return False  # a scalar, or an activation that does not lead with a batch of one
    reshapes = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "")
        operand = constant(int(op.inputs[1])) if len(op.inputs) > 1 and op.inputs[1] >= 0 else None
        if not len(op.inputs) or int(op.inputs[0]) not in activations:
            return False  # an op on constants alone, or whose first input is one
        rank = len(graph.tensors[int(op.inputs[0])].shape)
        if name == "RESHAPE" and operand is not None and len(operand) and operand[0] == 1:
            reshapes.append(op)
        elif not _keeps_rows(name, operand, rank, op.builtinOptions):
            return False
    for i in activations:
        t = graph.tensors[i]
        t.shapeSignature = np.array([-1, *t.shape[1:]], np.int32)
    for op in reshapes:  # each its own copy of the shape: a constant can be shared with other ops
        new = constant(int(op.inputs[1])).copy()  # type: ignore[union-attr]
        new[0] = -1
        buffer = schema.BufferT()
        buffer.data, buffer.offset, buffer.size = np.frombuffer(new.tobytes(), np.uint8), 0, 0
        buffers.append(buffer)
        shape = copy.copy(graph.tensors[int(op.inputs[1])])
        shape.buffer = len(buffers) - 1
        graph.tensors.append(shape)
        op.inputs = np.array([op.inputs[0], len(graph.tensors) - 1, *op.inputs[2:]], np.int32)
        if op.builtinOptions is not None and getattr(op.builtinOptions, "newShape", None) is not None:
            op.builtinOptions.newShape = [-1, *list(op.builtinOptions.newShape)[1:]]
    model.buffers = buffers
    return True


def _keeps_rows(name: str, operand: np.ndarray | None, rank: int, options: Any) -> bool:
    """Whether an op other than RESHAPE computes each row on its own: ``operand`` its second input's values
    where that is an int32 constant (a permutation, the axes reduced), ``rank`` its first input's."""
    batch = (0, -rank)  # axis 0, as a non-negative or a negative index
    if name == "TRANSPOSE":
        return operand is not None and len(operand) > 0 and operand[0] == 0
    if name in ("MEAN", "SUM"):
        return operand is not None and not any(int(a) in batch for a in operand)
    if name == "CONCATENATION":
        return options is not None and int(options.axis) not in batch
    return name in ROW_WISE


def _aligned(schema: Any, buffer: Any, data: np.ndarray | None = None) -> Any:
    """A ``BufferT`` whose bytes are packed ``ALIGN``-aligned (the generated ``Pack`` aligns to 4)."""
    out = _aligned_class(schema)()
    out.data = data if buffer is None else buffer.data
    out.offset, out.size = (0, 0) if buffer is None else (buffer.offset, buffer.size)
    return out


@functools.cache
def _aligned_class(schema: Any) -> Any:
    class Aligned(schema.BufferT):
        def Pack(self, builder: Any) -> int:  # noqa: N802 - the generated API's name
            raw = np.asarray(self.data, np.uint8).tobytes() if self.data is not None and len(self.data) else None
            vector = None
            if raw is not None:
                builder.StartVector(1, len(raw), ALIGN)
                builder.head -= len(raw)
                builder.Bytes[builder.head : builder.head + len(raw)] = raw
                vector = builder.EndVector()  # flatbuffers >= 2, as the generated schema code itself
            schema.BufferStart(builder)
            if vector is not None:
                schema.BufferAddData(builder, vector)
            schema.BufferAddOffset(builder, self.offset)
            schema.BufferAddSize(builder, self.size)
            return int(schema.BufferEnd(builder))

    return Aligned


def _quantiser(detail: dict[str, Any], where: Path) -> Callable[[np.ndarray], np.ndarray]:
    """float32 -> what the input tensor of ``detail`` holds: itself for a float tensor; for an integer one,
    ``round(x / scale) + zero_point`` clipped to the type's range (rounding half away from zero, as
    TFLite's own QUANTIZE kernel)."""
    dtype = np.dtype(detail["dtype"])
    if dtype == np.float32:
        return lambda x: x
    scale, zero = detail["quantization"]
    if dtype.kind not in "iu" or not scale > 0:
        raise ModelFileError(f"{where} takes {dtype} input without a scale; cnnx feeds float32, int8 or uint8")
    lo, hi = np.iinfo(dtype).min, np.iinfo(dtype).max

    def quantise(x: np.ndarray) -> np.ndarray:
        q = (np.asarray(x, np.float32) / np.float32(scale)).astype(np.float64)  # divided in float32, as TFLite
        rounded = np.sign(q) * np.floor(np.abs(q) + 0.5)  # half away from zero, exact in float64 (std::round)
        return np.clip(rounded + zero, lo, hi).astype(dtype)

    return quantise


def _dequantiser(detail: dict[str, Any], where: Path) -> Callable[[np.ndarray], np.ndarray]:
    """What the output tensor of ``detail`` holds -> float32: ``scale * (q - zero_point)`` for an integer one."""
    dtype = np.dtype(detail["dtype"])
    if dtype == np.float32:
        return lambda y: np.array(y, np.float32)  # copied: the interpreter reuses the buffer next call
    scale, zero = detail["quantization"]
    if dtype.kind not in "iu" or not scale > 0:
        raise ModelFileError(f"{where} gives {dtype} output without a scale; cnnx reads float32, int8 or uint8")
    return lambda y: ((y.astype(np.float32) - np.float32(zero)) * np.float32(scale)).astype(np.float32)


def open_tflite(path: Path, threads: int) -> tuple[Any, Callable[[np.ndarray], np.ndarray]]:
    """(LiteRT's interpreter on ``path``, ``run``: (N, C, H, W) float32 -> (N, K) float32 logits, any N).

    An int8 file's input is quantised and its output dequantised here (the tensors' own scale and zero point)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise _absent(path) from None
    try:
        with native_stderr_held():  # LiteRT says when it applies its XNNPACK delegate
            interpreter = Interpreter(model_path=str(path), num_threads=max(1, threads))
            interpreter.allocate_tensors()
    except Exception as exc:  # ValueError/RuntimeError from the C++ side
        raise ModelFileError(f"{path} does not load in LiteRT: {first_line(exc)[:300]}") from None
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelFileError(f"{path} has {len(inputs)} inputs and {len(outputs)} outputs; cnnx runs one of each")
    shape = tuple(int(d) for d in inputs[0]["shape"])  # (B, C, H, W): B as allocated now
    free = int(inputs[0]["shape_signature"][0]) == -1 if len(inputs[0]["shape_signature"]) else False
    i_in, i_out = inputs[0]["index"], outputs[0]["index"]
    quantise, dequantise = _quantiser(inputs[0], path), _dequantiser(outputs[0], path)
    lock = threading.Lock()  # one interpreter holds one input and one output tensor: one call at a time
    allocated = [shape[0]]  # the batch the interpreter's tensors hold now

    def invoke(part: np.ndarray, n: int) -> np.ndarray:
        """Logits of ``part`` (a full batch: ``allocated[0]`` images), the first ``n`` rows."""
        with lock:
            if len(part) != allocated[0]:  # a batch-free file, given a piece of another size
                interpreter.resize_tensor_input(i_in, [len(part), *shape[1:]])
                interpreter.allocate_tensors()
                allocated[0] = len(part)
            interpreter.set_tensor(i_in, quantise(part))
            interpreter.invoke()
            return dequantise(interpreter.get_tensor(i_out)[:n])

    def run(x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        if x.ndim != len(shape) or x.shape[1:] != shape[1:]:
            raise ModelFileError(f"{path} takes batches of shape (N, {', '.join(map(str, shape[1:]))}), got {x.shape}")
        step = CHUNK if free else shape[0]
        out = []
        for i in range(0, len(x), step):
            part = x[i : i + step]
            n = len(part)
            if n < step and not free:  # the last piece, padded: rows are independent
                part = np.concatenate([part, np.zeros((step - n, *shape[1:]), np.float32)])
            try:
                out.append(invoke(part, n))
            except Exception as exc:
                raise ModelFileError(f"{path} failed on a batch of shape {x.shape}: {first_line(exc)[:300]}") from None
        return np.concatenate(out) if out else np.zeros((0, int(outputs[0]["shape"][-1])), np.float32)

    return interpreter, run
