"""The onnx-fp16 and ort formats: made by `cnnx export`, loaded back by onnxruntime, gated, refused when
broken (exit 3, nothing left behind); `--format all` names the formats it could not make."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from cnnx.cli import main
from tests.support import MINI_MNIST

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")


def _export(*args: str):  # noqa: ANN202 - click's Result
    return CliRunner().invoke(main, ["export", *args])


@pytest.fixture(scope="module")
def report(exported: Path) -> dict[str, Any]:
    """parity.json of the session's `cnnx export --format all` (tests/conftest.py: mnist.* in ``exported``)."""
    return json.loads((exported / "parity.json").read_text())


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    """A destination that already holds a file of the user's, which a failed export must leave alone."""
    out = tmp_path / "models"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    return out


def _left(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir())


def _session(path: Path) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _digits(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n mini-MNIST test digits, normalised: (n, 1, 28, 28) float32, and labels (n,)."""
    from cnnx.core.contract import normalise
    from cnnx.core.idx import read_idx

    x = read_idx(MINI_MNIST / "t10k-images-idx3-ubyte.gz")[:n, None]
    return normalise(x, (0.1307,), (0.3081,)), read_idx(MINI_MNIST / "t10k-labels-idx1-ubyte.gz")[:n]


def test_all_writes_fp16_and_ort_beside_onnx_each_through_its_gate(exported: Path, report: dict[str, Any]) -> None:
    names = {p.name for p in exported.iterdir()}
    assert {"mnist.fp16.onnx", "mnist.ort", "mnist.required_operators.config"} <= names
    assert not [n for n in names if n.startswith(".")]  # the ONNX file the .ort was converted from stays behind
    from cnnx.export.formats import NOT_MADE, missing

    optional = ("openvino", "executorch", "tflite")
    installed = [n for n in optional if not missing(n)]  # the optional formats installed here
    assert report["written"] == ["onnx", "torchscript", "onnx-fp16", "ort", *installed]
    assert report["skipped"] == {**{n: missing(n) for n in optional if missing(n)}, **NOT_MADE}
    fp16, ort_r, fp32 = report["formats"]["onnx-fp16"], report["formats"]["ort"], report["formats"]["onnx"]
    assert fp16["passed"] and fp16["top1_agreement"] >= 0.999 and fp16["accuracy_drop_pp"] <= 0.05
    assert fp16["size_bytes"] < 0.6 * fp32["size_bytes"]  # float16 weights: half the bytes
    assert 1e-5 < fp16["real"]["max_abs_diff"] < 0.1  # really fp16: not bit-equal to fp32, yet close
    assert ort_r["passed"] and ort_r["top1_agreement"] == 1.0
    assert ort_r["real"]["max_abs_diff"] <= 1e-4 and ort_r["random"]["max_abs_diff"] <= 1e-4
    assert ort_r["tolerance"]["atol"] == 1e-4 and fp16["tolerance"]["min_agreement"] == 0.999


def test_onnx_files_are_written_at_the_lowest_ir_version_their_opsets_allow(exported: Path) -> None:
    """torch writes IR 10, which onnxruntime before 1.18 refuses; opset 18 needs no more than IR 8."""
    for name in ("mnist.onnx", "mnist.fp16.onnx"):
        proto = onnx.load(str(exported / name))
        assert proto.ir_version == onnx.helper.find_min_ir_version_for(proto.opset_import, True) == 8, name


def test_fp16_keeps_float32_input_and_output_and_float16_weights(exported: Path) -> None:
    from cnnx.core.spec import ModelSpec

    path = exported / "mnist.fp16.onnx"
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)  # nodes in topological order, types consistent
    weights = [t for t in proto.graph.initializer if len(t.dims) > 1]
    assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)
    session = _session(path)
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, inp.shape) == ("input", "tensor(float)", ["batch", 1, 28, 28])
    assert (out.name, out.type, out.shape) == ("logits", "tensor(float)", ["batch", 10])
    spec = ModelSpec.from_onnx_metadata(session.get_modelmeta().custom_metadata_map)
    assert spec.extra["precision"] == "fp16" and spec.extra["parity"]["passed"]
    x, y = _digits(37)
    fp32 = _session(exported / "mnist.onnx").run(["logits"], {"input": x})[0]
    (got,) = session.run(["logits"], {"input": x})
    assert got.dtype == np.float32 and (got.argmax(1) == fp32.argmax(1)).all()


def test_ort_file_runs_in_onnxruntime_with_spec_and_operator_config(exported: Path) -> None:
    from cnnx.core.spec import ModelSpec

    session = _session(exported / "mnist.ort")
    spec = ModelSpec.from_onnx_metadata(session.get_modelmeta().custom_metadata_map)
    assert spec.extra["format"] == "ort" and spec.extra["parity"]["passed"] and spec.extra["precision"] == "fp32"
    x, _ = _digits(37)
    fp32 = _session(exported / "mnist.onnx").run(["logits"], {"input": x})[0]
    np.testing.assert_allclose(session.run(["logits"], {"input": x})[0], fp32, rtol=0, atol=1e-4)
    config = (exported / "mnist.required_operators.config").read_text().splitlines()
    assert "# - mnist.ort" in config  # names the shipped file, not the machine's temporary path
    assert any(line.startswith("ai.onnx;") and "Conv" in line for line in config)


def test_ort_alone_brings_its_fp32_source(trained_run: Path, tmp_path: Path) -> None:
    result = _export(str(trained_run / "best.pt"), "--format", "ort", "--exporter", "legacy", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert _left(tmp_path) == ["best.onnx", "best.ort", "best.required_operators.config", "parity.json"]


def test_weight_changed_in_fp16_file_fails_and_leaves_nothing(
    trained_run: Path, out_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from onnx import numpy_helper

    from cnnx.export.formats import onnx_fp16

    real_export = onnx_fp16.export

    def perturbed(model, spec, path, **options):  # noqa: ANN001, ANN202 - wraps the real export
        real_export(model, spec, path, **options)
        proto = onnx.load(str(path))
        bias = next(t for t in proto.graph.initializer if t.name.endswith("head.bias"))
        values = numpy_helper.to_array(bias).copy()
        values[0] += 50  # class 0 wins almost everywhere: agreement and accuracy collapse
        bias.CopyFrom(numpy_helper.from_array(values, bias.name))
        onnx.save(proto, str(path))
        return path

    monkeypatch.setattr(onnx_fp16, "export", perturbed)
    args = ("--format", "onnx-fp16", "--exporter", "legacy", "--out", str(out_dir))
    result = _export(str(trained_run / "best.pt"), *args)
    assert result.exit_code == 3, result.output
    assert "no onnx-fp16 export passed" in result.stderr and "top-1 agreement with torch" in result.stderr
    assert _left(out_dir) == ["keep.txt"]  # not even the fp32 file that passed


def test_weight_changed_in_ort_file_fails_and_leaves_nothing(
    trained_run: Path, out_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from onnx import numpy_helper

    from cnnx.export.formats import ort_format

    real_export = ort_format.export

    def perturbed(model, spec, path, **options):  # noqa: ANN001, ANN202
        real_export(model, spec, path, **options)
        source = ort_format._source_of(path)  # the .ort flatbuffer is rebuilt from a perturbed graph
        proto = onnx.load(str(source))
        bias = next(t for t in proto.graph.initializer if t.name.endswith("head.bias"))
        values = numpy_helper.to_array(bias).copy()
        values[0] += 1e-3  # 10x the tolerance; top-1 mostly unchanged
        bias.CopyFrom(numpy_helper.from_array(values, bias.name))
        onnx.save(proto, str(source))
        ort_format._convert(source, path)
        return path

    monkeypatch.setattr(ort_format, "export", perturbed)
    result = _export(str(trained_run / "best.pt"), "--format", "ort", "--exporter", "legacy", "--out", str(out_dir))
    assert result.exit_code == 3, result.output
    assert "no ort export passed" in result.stderr and "exceeds 0.0001" in result.stderr
    assert _left(out_dir) == ["keep.txt"]


def test_all_names_a_format_whose_tools_are_missing_and_a_named_one_is_refused(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnx.export.formats import executorch_pte, openvino_ir, ort_format

    monkeypatch.setattr(ort_format, "missing", lambda: "onnxruntime's ORT converter cannot be imported (test)")
    for module in (openvino_ir, executorch_pte):  # the slowest to make: left out too (their gates are tested apart)
        monkeypatch.setattr(module, "missing", lambda: "not installed (test)")
    result = _export(str(trained_run / "best.pt"), "--format", "all", "--exporter", "legacy", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "parity.json").read_text())
    from cnnx.export.formats import missing

    # and the optional formats not installed here (tflite: litert-torch lives in an environment of its own)
    assert list(report["skipped"]) == ["ort", "openvino", "executorch", *(["tflite"] if missing("tflite") else [])]
    assert report["skipped"]["ort"] == "onnxruntime's ORT converter cannot be imported (test)"
    assert "ort: left out (onnxruntime's ORT converter cannot be imported (test))" in result.stderr
    assert "\nleft out ort: onnxruntime's ORT converter cannot be imported (test)\n" in result.stdout  # the report
    assert not (tmp_path / "best.ort").exists() and (tmp_path / "best.fp16.onnx").is_file()
    named = _export(str(trained_run / "best.pt"), "--format", "ort", "--out", str(tmp_path / "o"))
    assert named.exit_code == 2 and named.stderr.startswith("error: --format ort cannot be made here: onnxruntime's")
    assert not (tmp_path / "o").exists()


def test_format_choices_of_the_cli_are_the_export_choices() -> None:
    from cnnx.cli.export import FORMAT_CHOICES
    from cnnx.export.options import CHOICES

    assert list(CHOICES) == FORMAT_CHOICES


def test_opset_imports_no_node_uses_are_dropped_so_older_runtimes_load_the_file() -> None:
    """onnxruntime's quantisation pre-processing imports ai.onnx.ml 5 (and more), which onnxruntime 1.17
    refuses although no node uses it; written files keep only the domains their nodes use."""
    from onnx import TensorProto, helper

    from cnnx.export.formats.onnx_fp32 import drop_unused_opsets, lowest_ir_version

    x, y = (helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in "xy")
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    imports = [helper.make_opsetid(d, v) for d, v in (("", 18), ("ai.onnx.ml", 5), ("com.microsoft", 1))]
    proto = helper.make_model(graph, opset_imports=imports)
    drop_unused_opsets(proto)
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", 18)]
    assert lowest_ir_version(proto) == 8


def test_all_leaves_out_an_fp16_file_that_misses_its_gate_but_named_it_fails(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model whose logits nearly tie (an untrained one) can miss fp16's 99.9%: --format all still ships
    the exact formats and says why fp16 is not there; --format onnx-fp16 is a failed gate (exit 3)."""
    import dataclasses

    from cnnx.export import parity

    monkeypatch.setitem(parity.GATES, "onnx-fp16", dataclasses.replace(parity.GATES["onnx-fp16"], min_agreement=1.01))
    args = ("--exporter", "legacy", "--out")
    result = _export(str(trained_run / "best.pt"), "--format", "all", *args, str(tmp_path / "all"))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "all" / "parity.json").read_text())
    assert "top-1 agreement" in report["skipped"]["onnx-fp16"] and "onnx-fp16" not in report["formats"]
    assert not (tmp_path / "all" / "best.fp16.onnx").exists() and (tmp_path / "all" / "best.ort").is_file()
    named = _export(str(trained_run / "best.pt"), "--format", "onnx-fp16", *args, str(tmp_path / "one"))
    assert named.exit_code == 3 and not (tmp_path / "one").exists()


def test_onnx_files_are_made_with_the_batchnorms_folded_and_say_so(exported: Path, report: dict[str, Any]) -> None:
    """The default network pools between each convolution and its BatchNorm, which no runtime folds by
    itself: the ONNX family is made with them folded (cnnx.export.fold), each gated on the unfolded checkpoint."""
    from cnnx.core.spec import ModelSpec
    from cnnx.export.formats import torchscript

    graph = onnx.load(str(exported / "mnist.onnx")).graph
    assert "BatchNormalization" not in {n.op_type for n in graph.node}
    assert [n.op_type for n in graph.node][:3] == ["Conv", "MaxPool", "Relu"]
    for name in ("mnist.onnx", "mnist.fp16.onnx", "mnist.ort"):
        meta = _session(exported / name).get_modelmeta().custom_metadata_map
        assert ModelSpec.from_onnx_metadata(meta).extra["batchnorm_folded"] == 3, name
    # TorchScript is the checkpoint's module as it is: its gate (1e-5) is tighter than folding's rounding
    script = torchscript.load(exported / "mnist.torchscript", threads=1)
    assert "batchnorm_folded" not in script.spec().extra
    assert len([m for _, m in script.module.named_modules() if m.original_name == "BatchNorm2d"]) == 3
    assert report["formats"]["onnx"]["passed"] and report["formats"]["torchscript"]["passed"]
