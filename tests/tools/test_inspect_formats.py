"""`cnnx inspect` on the files `cnnx export` makes beside ONNX: .ort (with its operator config) and
OpenVINO .xml (with its .bin): kind, spec, self-check, size, as text and --json, run as a user runs it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.support import cnnx_without, run_cli

pytest.importorskip("torch")  # the `exported` fixture trains and exports a model


def _inspect(path: Path) -> dict:
    return json.loads(run_cli("inspect", str(path), "--json", check=True).stdout)


def test_an_ort_file_shows_its_spec_self_check_and_operator_config_without_torch(exported: Path) -> None:
    ort = exported / "mnist.ort"
    proc = cnnx_without("torch", "inspect", str(ort), "--json")  # an edge install: no torch, no onnx
    assert proc.returncode == 0, proc.stderr
    text, modules = proc.stdout.rsplit("\n", 2)[0], proc.stdout.strip().splitlines()[-1]
    assert json.loads(modules) == []
    info = json.loads(text)
    config = exported / "mnist.required_operators.config"
    assert info["kind"] == "ort" and info["spec"]["arch"] == "mnist-bn16" and info["spec"]["extra"]["format"] == "ort"
    assert info["parity"]["passed"] and info["selfcheck"] == {"images": 8, "format": "ort", "atol": 1e-4}
    assert info["files"] == {"mnist.ort": ort.stat().st_size, config.name: config.stat().st_size}
    assert info["size_bytes"] == sum(info["files"].values()) and info["operators"]["count"] >= 5
    assert info["inputs"] == [{"name": "input", "shape": ["batch", 1, 28, 28], "type": "tensor(float)"}]
    assert "cnnx_selfcheck" not in info["other_metadata"]  # summarised under "selfcheck", not dumped

    out = run_cli("inspect", str(ort), check=True).stdout
    assert "kind:             ort (onnxruntime's flatbuffer format)" in out
    assert "self-check:       8 test images, |d|<=0.0001 (ort gate)" in out and "operators:" in out


def test_a_renamed_ort_file_is_still_read_as_one(exported: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model.onnx"  # no config beside it, and the wrong suffix
    shutil.copy(exported / "mnist.ort", copy)
    info = _inspect(copy)
    assert info["kind"] == "ort" and info["spec"]["arch"] == "mnist-bn16" and "files" not in info
    assert info["size_bytes"] == copy.stat().st_size and "operators" not in info


def test_an_openvino_file_shows_its_spec_self_check_and_weights(exported: Path, tmp_path: Path) -> None:
    pytest.importorskip("openvino", reason="the openvino extra is not installed: pip install 'cnnx[openvino]'")
    xml, bin_ = exported / "mnist.xml", exported / "mnist.bin"
    info = _inspect(xml)
    assert info["kind"] == "openvino" and info["spec"]["extra"]["format"] == "openvino" and info["parity"]["passed"]
    assert info["selfcheck"] == {"images": 8, "format": "openvino", "atol": 1e-4}
    assert info["files"] == {"mnist.xml": xml.stat().st_size, "mnist.bin": bin_.stat().st_size}
    assert info["size_bytes"] == xml.stat().st_size + bin_.stat().st_size
    assert info["inputs"] == [{"name": "input", "shape": ["?", 1, 28, 28], "type": "f32"}]
    assert info["outputs"] == [{"name": "logits", "shape": ["?", 10], "type": "f32"}]
    assert info["producer"].startswith("OpenVINO 20")
    out = run_cli("inspect", str(xml), check=True).stdout
    assert "kind:             openvino (OpenVINO IR)" in out and "mnist.bin" in out
    assert "self-check:       8 test images, |d|<=0.0001 (openvino gate)" in out

    shutil.copy(xml, tmp_path / "mnist.xml")  # its weights left behind
    proc = run_cli("inspect", str(tmp_path / "mnist.xml"))
    assert proc.returncode == 2
    assert proc.stderr == f"error: {tmp_path / 'mnist.xml'} has no weights file mnist.bin beside it\n"


def test_onnx_files_say_whether_they_carry_a_self_check(exported: Path, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    info = _inspect(exported / "mnist.fp16.onnx")
    assert info["selfcheck"]["format"] == "onnx-fp16" and info["selfcheck"]["images"] == 8
    proto = onnx.load(str(exported / "mnist.onnx"))
    keep = [p for p in proto.metadata_props if p.key != "cnnx_selfcheck"]  # as files of older cnnx versions
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    onnx.save(proto, str(tmp_path / "old.onnx"))
    assert _inspect(tmp_path / "old.onnx")["selfcheck"] is None
    assert (
        "self-check:       none: `cnnx verify` cannot check this file"
        in run_cli("inspect", str(tmp_path / "old.onnx")).stdout
    )


def test_an_unreadable_spec_beside_a_pte_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "m.pte").write_bytes(b"\x00\x00\x00\x00ET12")  # never loaded: the program is not read
    (tmp_path / "m.pte.json").write_bytes(b"\xff\xfe\x00 not text")
    proc = run_cli("inspect", str(tmp_path / "m.pte"))
    assert proc.returncode == 2 and "cannot read" in proc.stderr and "m.pte.json" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_a_pte_copied_without_its_spec_says_which_file_is_missing(tmp_path: Path) -> None:
    (tmp_path / "m.pte").write_bytes(b"\x00\x00\x00\x00ET12")
    info = _inspect(tmp_path / "m.pte")
    assert info["spec"] is None and info["note"].startswith("no cnnx spec: m.pte.json is not beside it")
