"""How cnnx opens every ONNX file: its external data checked first, then an onnxruntime session
(``.ort`` files too, recognised by their content whatever their name).

The edge runtime (``cnnx infer``/``eval``), export's parity gate, ``cnnx inspect`` and
``cnnx bench`` all open sessions here, with the options the device will use. Stdlib at
import time (onnxruntime loads when a session is made); no ``onnx`` package.

External data: an ONNX tensor may keep its values in an outside file (``external_data`` with a
``location``). A hostile model could name ``../../home/user/.ssh/id_rsa`` or an
absolute path and have the runtime read it; recent onnxruntime releases refuse
that, older ones (which cnnx supports) do not. So cnnx walks the protobuf itself
and refuses any location that resolves outside the model's folder, symbolic
links included, before onnxruntime sees the file.

The walk knows just enough of onnx.proto to reach every tensor: the graph's
initialisers, tensors in node attributes, subgraphs (If, Loop, Scan), functions
and training graphs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cnnx.core.errors import ModelFileError

# Field numbers from onnx.proto.
_MODEL_GRAPH, _MODEL_TRAINING, _MODEL_FUNCTIONS = 7, 20, 25
_GRAPH_NODE, _GRAPH_INIT, _GRAPH_SPARSE_INIT = 1, 5, 15
_NODE_ATTRIBUTE, _FUNCTION_NODE = 5, 7
_ATTR_TENSOR, _ATTR_GRAPH, _ATTR_TENSORS, _ATTR_GRAPHS, _ATTR_SPARSE, _ATTR_SPARSES = 5, 6, 10, 11, 22, 23
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_TENSOR_EXTERNAL = 13
_TRAINING_GRAPHS = (1, 2)  # initialization, algorithm
_MAX_DEPTH = 64  # subgraphs nest; a file nesting deeper than this is hostile, not a model
ORT_MAGIC = b"ORTM"  # the flatbuffer file identifier of onnxruntime's .ort format, at bytes 4 to 8


def varint(buf: bytes, pos: int) -> tuple[int, int]:
    """(value, next position) of the protobuf varint at ``pos``."""
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ModelFileError("truncated protobuf")
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """Top-level (field number, value) pairs of a protobuf message; nested messages stay bytes."""
    out, pos = [], 0
    while pos < len(buf):
        key, pos = varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = varint(buf, pos)
        elif wire == 2:
            size, pos = varint(buf, pos)
            if pos + size > len(buf):
                raise ModelFileError("truncated protobuf")
            value, pos = buf[pos : pos + size], pos + size
        elif wire in (1, 5):  # fixed 64 / 32 bit
            value, pos = buf[pos : pos + (8 if wire == 1 else 4)], pos + (8 if wire == 1 else 4)
        else:
            raise ModelFileError(f"unexpected protobuf wire type {wire}")
        out.append((number, value))
    return out


def _messages(buf: bytes, numbers: tuple[int, ...]) -> Iterator[bytes]:
    for number, value in fields(buf):
        if number in numbers and isinstance(value, bytes):
            yield value


def _tensor_locations(tensor: bytes) -> Iterator[str]:
    for entry in _messages(tensor, (_TENSOR_EXTERNAL,)):
        pairs = dict(fields(entry))  # StringStringEntryProto: 1 key, 2 value
        value = pairs.get(2)
        if pairs.get(1) == b"location" and isinstance(value, bytes):
            yield value.decode("utf-8", errors="surrogateescape")


def _sparse_locations(sparse: bytes) -> Iterator[str]:
    for tensor in _messages(sparse, (_SPARSE_VALUES, _SPARSE_INDICES)):
        yield from _tensor_locations(tensor)


def _nodes_locations(nodes: Iterator[bytes], depth: int) -> Iterator[str]:
    for node in nodes:
        for attr in _messages(node, (_NODE_ATTRIBUTE,)):
            for number, value in fields(attr):
                if not isinstance(value, bytes):
                    continue
                if number in (_ATTR_TENSOR, _ATTR_TENSORS):
                    yield from _tensor_locations(value)
                elif number in (_ATTR_SPARSE, _ATTR_SPARSES):
                    yield from _sparse_locations(value)
                elif number in (_ATTR_GRAPH, _ATTR_GRAPHS):
                    yield from _graph_locations(value, depth + 1)


def _graph_locations(graph: bytes, depth: int = 0) -> Iterator[str]:
    if depth > _MAX_DEPTH:
        raise ModelFileError(f"subgraphs nested over {_MAX_DEPTH} deep")
    for tensor in _messages(graph, (_GRAPH_INIT,)):
        yield from _tensor_locations(tensor)
    for sparse in _messages(graph, (_GRAPH_SPARSE_INIT,)):
        yield from _sparse_locations(sparse)
    yield from _nodes_locations(_messages(graph, (_GRAPH_NODE,)), depth)


def external_locations(model: bytes) -> list[str]:
    """Every external-data ``location`` an ONNX ModelProto names, in file order."""
    if b"location" not in model:  # every external reference spells it out: most files stop here
        return []
    found: list[str] = []
    for number, value in fields(model):
        if not isinstance(value, bytes):
            continue
        if number == _MODEL_GRAPH:
            found += _graph_locations(value)
        elif number == _MODEL_FUNCTIONS:
            found += _nodes_locations(_messages(value, (_FUNCTION_NODE,)), 0)
        elif number == _MODEL_TRAINING:
            for graph in _messages(value, _TRAINING_GRAPHS):
                found += _graph_locations(graph)
    return found


def check_external_data(path: Path, model: bytes) -> None:
    """Raise ModelFileError when ``model`` (the bytes of ``path``) refers to data outside its folder.

    Only paths are compared (resolved, symbolic links followed): no outside file is opened.
    """
    try:
        locations = external_locations(model)
    except ModelFileError as exc:
        raise ModelFileError(
            f"{path} is not a usable ONNX model: {exc.message}", "re-export it with `cnnx export`"
        ) from None
    folder = os.path.realpath(path.parent)
    for location in locations:
        target = os.path.realpath(os.path.join(folder, location))
        if os.path.isabs(location) or os.path.commonpath([folder, target]) != folder:
            raise ModelFileError(
                f"{path} refers to external data outside its folder ({location!r}); cnnx does not read it",
                "keep a model's external data files in the model's own folder",
            )


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


def is_ort(data: bytes) -> bool:
    """Are ``data`` the bytes of an onnxruntime .ort file (a flatbuffer with the file identifier ``ORTM``)?"""
    return data[4:8] == ORT_MAGIC


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
    options = session_options(threads)
    # onnxruntime takes a file for ORT by its suffix (.ort) unless told; an .ort file is no protobuf
    # and names no outside file by path, so the external-data walk is for ONNX files only
    if is_ort(data):
        options.add_session_config_entry("session.load_model_format", "ORT")
    else:
        check_external_data(path, data)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
