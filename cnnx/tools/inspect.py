"""``cnnx inspect``: what a model file holds, read as cheaply as the file allows.

``.onnx`` and ``.ort`` files are read with onnxruntime and the standard library only (a few
top-level protobuf fields of an ONNX file are decoded by hand for the opset), and TorchScript
archives with ``zipfile``: all work on an edge install without torch or onnx. OpenVINO ``.xml``
files are read (not compiled) with openvino, which ``cnnx[openvino]`` installs, and a ``.pt``
checkpoint needs torch; each is imported only when such a file is inspected.

Files of the ONNX family, OpenVINO, TFLite and ExecuTorch files (in the .pte.json beside the
program) carry the self-check ``cnnx verify`` runs (``cnnx.core.selfcheck``): inspect says whether it
is there and what it holds, without running it.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnx.core import pteio
from cnnx.core.contract import OUTPUT_NAME, TORCHSCRIPT_SPEC_FILE, first_line, is_torchscript, run_checkpoint
from cnnx.core.errors import CnnxError, ModelFileError
from cnnx.core.onnxio import fields as _fields
from cnnx.core.onnxio import is_ort
from cnnx.core.selfcheck import KEY as SELFCHECK_KEY
from cnnx.core.selfcheck import SelfCheck
from cnnx.core.spec import ONNX_PREFIX, Extra, ModelSpec

ORT_CONFIG = ".required_operators.config"  # what `cnnx export --format ort` writes beside the .ort file
UNREADABLE = "inspect takes .onnx, .ort, OpenVINO .xml, .tflite, TorchScript and .pt checkpoint files"


def onnx_header(data: bytes) -> dict[str, Any]:
    """ir_version, producer and opsets from an ONNX ModelProto (fields 1, 2, 3, 8), without the onnx package."""
    header: dict[str, Any] = {"ir_version": None, "producer": "", "opset": {}}
    for number, value in _fields(data):
        if number == 1:
            header["ir_version"] = value
        elif number in (2, 3) and isinstance(value, bytes):
            header["producer"] = (header["producer"] + " " + value.decode(errors="replace")).strip()
        elif number == 8 and isinstance(value, bytes):
            opset = dict(_fields(value))  # OperatorSetIdProto: 1 domain, 2 version
            domain = opset.get(1, b"")
            header["opset"][(domain.decode() if isinstance(domain, bytes) else "") or "ai.onnx"] = opset.get(2)
    return header


def _session(path: Path) -> Any:
    """An onnxruntime session on ``path`` (.onnx or .ort); ModelFileError for a file it cannot read."""
    from cnnx.core.onnxio import open_session

    try:
        return open_session(path, threads=1)  # checks external data before onnxruntime opens the file
    except ModelFileError:
        raise
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
        raise ModelFileError(f"{path} is not a model cnnx can read: {first_line(exc)[:200]}", UNREADABLE) from None


def _session_info(session: Any) -> dict[str, Any]:
    """Inputs, outputs, spec, self-check and the other metadata of an onnxruntime session."""

    def describe(values: list[Any]) -> list[dict[str, Any]]:
        return [{"name": v.name, "shape": list(v.shape), "type": v.type} for v in values]

    meta = session.get_modelmeta().custom_metadata_map
    return {
        "inputs": describe(session.get_inputs()),
        "outputs": describe(session.get_outputs()),
        **_spec(lambda: ModelSpec.from_onnx_metadata(meta)),
        **_selfcheck(meta.get(SELFCHECK_KEY)),
        "other_metadata": {k: v for k, v in meta.items() if not k.startswith(ONNX_PREFIX) and k != SELFCHECK_KEY},
    }


def _onnx(path: Path, data: bytes) -> dict[str, Any]:
    session = _session(path)
    return {"kind": "onnx", **onnx_header(data), **_session_info(session)}


def _ort(path: Path, data: bytes) -> dict[str, Any]:
    """An .ort file: onnxruntime's flatbuffer form of an ONNX model, with the ONNX metadata (spec,
    self-check) kept; the operators a minimal onnxruntime build needs are in the config beside it."""
    info: dict[str, Any] = {"kind": "ort", **_session_info(_session(path))}
    config = path.parent / (path.name.removesuffix(path.suffix) + ORT_CONFIG)
    if config.is_file():
        lines = [line.strip() for line in config.read_text(errors="replace").splitlines()]
        ops = {op for line in lines if line and not line.startswith("#") for op in line.split(";")[-1].split(",")}
        info["operators"] = {"file": config.name, "count": len(ops)}
        info["companions"] = [config]
    return info


def _openvino(path: Path, data: bytes) -> dict[str, Any]:
    """An OpenVINO IR file (.xml, its weights in the .bin beside it), read and not compiled; the spec
    and the self-check are in its rt_info."""
    from cnnx.core.openvinoio import RT_SELFCHECK, RT_SPEC, read_ir, rt_text

    _core, model = read_ir(path)

    def describe(ports: list[Any]) -> list[dict[str, Any]]:
        return [
            {
                "name": sorted(p.get_names())[0] if p.get_names() else p.get_any_name(),
                "shape": [d.get_length() if d.is_static else "?" for d in p.get_partial_shape()],
                "type": p.get_element_type().get_type_name(),
            }
            for p in ports
        ]

    made = rt_text(model, ["Runtime_version"])
    spec_text = rt_text(model, RT_SPEC)
    return {
        "kind": "openvino",
        "producer": f"OpenVINO {made.split('-')[0]}" if made else "",  # 2026.4.1-22982-e213a14...
        "inputs": describe(model.inputs),
        "outputs": describe(model.outputs),
        **_spec(lambda: ModelSpec.from_dict(json.loads(spec_text)) if spec_text is not None else None),
        **_selfcheck(rt_text(model, RT_SELFCHECK)),
        "companions": [path.with_suffix(".bin")],
    }


PTE_SPEC = ".pte.json"  # the spec and self-check beside an ExecuTorch program (cnnx.export.formats.executorch_pte)
PTE_BUNDLE = ".bpte"  # ExecuTorch's bundled program beside it: the program with the self-check's images and logits


def _executorch(path: Path, data: bytes) -> dict[str, Any]:
    """An ExecuTorch program (.pte): a flatbuffer with no room for metadata; its spec and self-check are in the
    JSON beside it, and its bundled program (.bpte), when there, is named with its size (a check, not shipped,
    so not counted in the program's size). Read without ExecuTorch (or torch): the program is not loaded."""
    pteio.check_whole(path)  # the spec beside it would read as if the program were whole
    stem = path.name.removesuffix(path.suffix)
    beside, bundle = path.parent / (stem + PTE_SPEC), path.parent / (stem + PTE_BUNDLE)
    text = None
    if beside.is_file():
        try:
            text = beside.read_text()
        except (OSError, UnicodeDecodeError) as exc:  # unreadable: said where the spec would be
            raise ModelFileError(f"cannot read {beside}: {first_line(exc)}") from None
    try:
        loaded = json.loads(text) if text is not None else {}
    except ValueError:
        loaded = {}  # _spec below says what is wrong with it
    raw: dict[str, Any] = loaded if isinstance(loaded, dict) else {}

    def read() -> ModelSpec | None:
        return ModelSpec.from_dict(json.loads(text)) if text is not None else None

    check = raw.get(SELFCHECK_KEY)
    spec = _spec(read)
    if text is None:  # the program alone: cnnx export writes its spec beside it, not into it
        spec["note"] = f"no cnnx spec: {beside.name} is not beside it (cnnx export writes spec and self-check there)"
    return {
        "kind": "executorch",
        **spec,
        **_selfcheck(check if isinstance(check, str) else None),
        **({"bundled_program": {"file": bundle.name, "size_bytes": bundle.stat().st_size}} if bundle.is_file() else {}),
        **({"companions": [beside]} if beside.is_file() else {}),
    }


def _tflite(path: Path, data: bytes) -> dict[str, Any]:
    """A LiteRT flatbuffer (.tflite): its spec in the model's metadata table (``cnnx.spec``), its inputs and
    outputs from subgraph 0; read with LiteRT's flatbuffer schema, the interpreter not started."""
    from cnnx.core import tfliteio

    info: dict[str, Any] = {"kind": "tflite"}
    try:
        info.update(tfliteio.signature(data, path))
    except ModelFileError as exc:
        info["note"] = exc.message
    try:
        meta = tfliteio.read_metadata(data, path)
    except ModelFileError:
        meta = {}
    check = meta.get(tfliteio.SELFCHECK_KEY)
    return {
        **info,
        **_spec(lambda: _tflite_spec(tfliteio.read_metadata(data, path))),
        **_selfcheck(check.decode() if check is not None else None),
    }


def _tflite_spec(meta: dict[str, bytes]) -> ModelSpec | None:
    from cnnx.core.tfliteio import SPEC_KEY

    return ModelSpec.from_dict(json.loads(meta[SPEC_KEY])) if SPEC_KEY in meta else None


def _selfcheck(text: str | None) -> dict[str, Any]:
    """What the self-check a file carries holds (images, format, tolerance), None when it carries none."""
    if text is None:
        return {"selfcheck": None}
    try:
        check = SelfCheck.decode(text)
    except ModelFileError as exc:
        return {"selfcheck": {"error": exc.message}}
    return {"selfcheck": {"images": int(check.pixels.shape[0]), "format": check.format, "atol": check.atol}}


def _torchscript(path: Path, data: bytes) -> dict[str, Any]:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        spec_name = next((n for n in names if n.endswith(f"/extra/{TORCHSCRIPT_SPEC_FILE}")), None)
        raw = archive.read(spec_name).decode() if spec_name else ""
    info: dict[str, Any] = {
        "kind": "torchscript",
        "entries": len(names),
        **_spec(lambda: ModelSpec.from_dict(json.loads(raw)) if raw else None),
    }
    spec = info.get("spec")
    if spec:  # TorchScript declares no inputs/outputs; the spec says what the module takes
        c, h, w = spec["input_shape"]
        info["inputs"] = [{"name": "x", "shape": ["N", c, h, w], "type": "float32, normalised"}]
        info["outputs"] = [{"name": OUTPUT_NAME, "shape": ["N", len(spec["classes"])], "type": "float32"}]
    return info


def _checkpoint(path: Path, data: bytes) -> dict[str, Any]:
    from cnnx.train import checkpoint as ckpt
    from cnnx.train.models import build_model, count_parameters, fitting_archs

    raw = ckpt.load_raw(path)  # weights_only=True; refuses pickled whole models with the way out
    if isinstance(raw, dict) and raw.get("format") == ckpt.FORMAT:
        metrics = raw.get("metrics") or []
        config = raw.get("config") or {}
        spec = ModelSpec.from_dict(raw["spec"])
        model = build_model(spec.arch, spec.num_classes, spec.input_shape)
        return {
            "kind": "cnnx-checkpoint",
            **_spec(lambda: spec),
            "epoch": raw.get("epoch"),
            "best_accuracy": raw.get("best_accuracy"),
            "last_epoch": metrics[-1] if metrics else None,
            "parameters": count_parameters(model),
            "config": config,
        }
    state = ckpt.unwrap_state_dict(raw, path)
    return {
        "kind": "state_dict",
        "spec": None,
        "tensors": len(state),
        "values": sum(v.numel() for v in state.values()),
        "fits_archs": fitting_archs(state),
        "note": "a bare state_dict: export it with `cnnx export FILE --arch NAME`",
    }


def _spec(read: Callable[[], ModelSpec | None]) -> dict[str, Any]:
    try:
        spec = read()
    except (CnnxError, ValueError, TypeError) as exc:
        return {"spec": None, "note": f"no usable cnnx spec: {exc}"}
    if spec is None:
        return {"spec": None, "note": "no cnnx spec: not exported by cnnx"}
    return {"spec": spec.to_dict(), "parity": spec.extra.get(Extra.PARITY)}


def _kind(path: Path, data: bytes) -> str:
    if is_ort(data):
        return "ort"
    if path.suffix.lower() == ".xml" or data.lstrip()[:5] in (b"<?xml", b"<net "):
        return "openvino"
    if data[4:8] == b"ET12" or path.suffix.lower() == ".pte":  # ExecuTorch's flatbuffer identifier
        return "executorch"
    if data[4:8] == b"TFL3" or path.suffix.lower() == ".tflite":  # TFLite's flatbuffer identifier
        return "tflite"
    if zipfile.is_zipfile(path):
        return "torchscript" if is_torchscript(path) else "checkpoint"
    if data[:1] == b"\x80":  # a pickle protocol header: torch.save's legacy (non-zip) format
        return "checkpoint"
    if data[:4] == b"PK\x03\x04" or path.suffix.lower() in (".pt", ".pth", ".ckpt"):
        return "checkpoint"  # a zip cut short (no central directory): torch.save's, to say it is truncated
    return "onnx"


READERS: dict[str, Callable[[Path, bytes], dict[str, Any]]] = {
    "onnx": _onnx,
    "ort": _ort,
    "openvino": _openvino,
    "executorch": _executorch,
    "tflite": _tflite,
    "torchscript": _torchscript,
    "checkpoint": _checkpoint,
}


def inspect_file(path: Path) -> dict[str, Any]:
    """What ``path`` holds (a run folder: its checkpoint, as export reads it): kind, size, sha256, spec,
    inputs/outputs, opset, self-check, parity summary.

    ``size_bytes`` counts the files shipped with it too (an OpenVINO .bin, an .ort file's operator
    config: ``files`` lists each), as ``cnnx export``'s report does; ``sha256`` is the file's own."""
    path = run_checkpoint(path)
    if not path.is_file():
        raise ModelFileError(
            f"no file at {path}", "give a model file (.onnx, .ort, .xml, .tflite, TorchScript, .pt) or a run folder"
        )
    data = path.read_bytes()
    info = READERS[_kind(path, data)](path, data)
    files = {path.name: len(data), **{c.name: c.stat().st_size for c in info.pop("companions", [])}}
    head = {"file": str(path), "size_bytes": sum(files.values()), "sha256": hashlib.sha256(data).hexdigest()}
    return {**head, **({"files": files} if len(files) > 1 else {}), **info}


def _line(key: str, value: Any) -> str:
    return f"{key + ':':<18}{value}"


KINDS = {  # what the text output calls each kind; --json keeps the short names
    "ort": "ort (onnxruntime's flatbuffer format)",
    "openvino": "openvino (OpenVINO IR)",
    "executorch": "executorch (an ExecuTorch program; its spec in the .pte.json beside it)",
    "tflite": "tflite (a LiteRT flatbuffer; its spec in its metadata)",
}


def _selfcheck_line(check: dict[str, Any] | None) -> str:
    if check is None:
        return _line("self-check", "none: `cnnx verify` cannot check this file")
    if "error" in check:
        return _line("self-check", f"UNREADABLE: {check['error']}")
    return _line(
        "self-check",
        f"{check['images']} test images, |d|<={check['atol']:g} ({check['format']} gate): run `cnnx verify FILE`",
    )


def _header_lines(info: dict[str, Any]) -> list[str]:
    """The file, its kind and size, its opset, and the numbers a checkpoint or state_dict carries."""
    files = info.get("files", {})
    parts = f" ({' + '.join(f'{n} {v / 1024:.1f} KB' for n, v in files.items())})" if files else ""
    lines = [
        _line("file", info["file"]),
        _line("kind", KINDS.get(info["kind"], info["kind"])),
        _line("size", f"{info['size_bytes'] / 1024:.1f} KB{parts}  sha256 {info['sha256'][:16]}..."),
    ]
    if info.get("opset"):
        opsets = ", ".join(f"{d} {v}" for d, v in info["opset"].items())
        lines.append(_line("opset", f"{opsets} (IR {info.get('ir_version')}, by {info.get('producer') or '?'})"))
    elif info.get("producer"):
        lines.append(_line("written by", info["producer"]))
    if info.get("operators"):
        ops = info["operators"]
        lines.append(_line("operators", f"{ops['count']} kinds, listed in {ops['file']} (for a minimal build)"))
    if info.get("best_accuracy") is not None:
        lines.append(_line("best.pt accuracy", f"{100 * info['best_accuracy']:.2f}% on the test split"))
    for key in ("epoch", "parameters", "tensors", "values", "fits_archs", "entries"):
        value = info.get(key)
        if value is not None:
            lines.append(_line(key.replace("_", " "), ", ".join(value) if isinstance(value, list) else value))
    return lines


def _spec_lines(spec: dict[str, Any]) -> list[str]:
    """What the model takes and gives, what it was trained on, and how the file was made."""
    classes, acc, extra = spec["classes"], spec.get("test_accuracy"), spec.get("extra", {})
    shown = ", ".join(classes[:12]) + (f", ... ({len(classes)})" if len(classes) > 12 else "")
    shape = "x".join(map(str, spec["input_shape"]))
    lines = [
        _line("arch", spec["arch"]),
        _line(
            "input", f"{shape} {spec['color']}, mean {spec['mean']} std {spec['std']}, preprocess {spec['preprocess']}"
        ),
        _line("classes", shown),
        _line("dataset", f"{spec.get('dataset') or '?'}, test accuracy {'?' if acc is None else f'{100 * acc:.2f}%'}"),
        _line("versions", ", ".join(f"{k} {v}" for k, v in spec.get("versions", {}).items())),
    ]
    cal, openset = spec.get("calibration"), spec.get("openset")
    if cal:
        lines.append(
            _line("calibration", f"temperature {cal['temperature']:.4g}, fitted on {cal.get('fitted_on', '?')}")
        )
    if openset:
        share = openset.get("false_refusal")
        lines.append(
            _line(
                "refuses",
                f"{openset['method']} below {openset['threshold']:.4g}"
                + (f" ({100 * share:g}% of held-out real images)" if share is not None else ""),
            )
        )
    if spec.get("checkpoint_sha256"):
        lines.append(_line("from checkpoint", f"sha256 {spec['checkpoint_sha256'][:16]}..."))
    made = {k: extra[k] for k in Extra.MADE_BY if k in extra}
    if made:
        lines.append(_line("made by", ", ".join(f"{k} {v}" for k, v in made.items())))
    return lines


def _parity_line(parity: dict[str, Any]) -> str:
    """The parity summary a file carries (``Extra.PARITY``), on one line."""
    src = parity.get("source", {})
    return _line(
        "parity",
        f"{'passed' if parity.get('passed') else 'FAILED'} on {parity['images']} "
        f"{src.get('dataset', '')} test images{' (sample)' if src.get('sample') else ''}: "
        f"max|d| {parity['real']['max_abs_diff']:.1e} real, {parity['random']['max_abs_diff']:.1e} "
        f"random; top-1 agreement {100 * parity['top1_agreement']:.2f}% "
        f"vs {parity['agreement_with']}; accuracy {100 * parity['accuracy']:.2f}%",
    )


def render(info: dict[str, Any]) -> str:
    """``cnnx inspect`` as text: the file, its spec, its inputs/outputs, its parity summary."""
    lines = _header_lines(info)
    if info.get("spec"):
        lines += _spec_lines(info["spec"])
    for key in ("inputs", "outputs"):
        lines += [_line(key[:-1], f"{v['name']} {v['type']} {list(v['shape'])}") for v in info.get(key, [])]
    if info.get("parity"):
        lines.append(_parity_line(info["parity"]))
    if "selfcheck" in info:
        lines.append(_selfcheck_line(info["selfcheck"]))
    if info.get("bundled_program"):  # an ExecuTorch program's .bpte
        bundle = info["bundled_program"]
        lines.append(
            _line(
                "bundled program",
                f"{bundle['file']} ({bundle['size_bytes'] / 1024:.1f} KB): the program with the self-check's images "
                "and logits, for ExecuTorch's executor_runner",
            )
        )
    if info.get("last_epoch"):
        last = info["last_epoch"].items()
        lines.append(
            _line("last epoch", ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in last))
        )
    if info.get("note"):
        lines.append(_line("note", info["note"]))
    return "\n".join(lines)
