"""The parity gate fails exports that differ from the checkpoint, with exit code 3 and no file left behind."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cnnx.cli import main
from cnnx.core.contract import TORCHSCRIPT_SPEC_FILE

pytest.importorskip("torch")


def _export(*args: str):  # noqa: ANN202 - click's Result
    return CliRunner().invoke(main, ["export", *args])


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    """A destination that already holds a file of the user's, which a failed export must leave alone."""
    out = tmp_path / "models"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    return out


def _left(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir())


def test_weight_changed_after_onnx_export_fails_and_leaves_nothing(
    trained_run: Path, out_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnx
    from onnx import numpy_helper

    from cnnx.export.formats import onnx_fp32 as onnx_format

    real_export = onnx_format.export

    def perturbed(model, spec, path, **options):  # noqa: ANN001, ANN202 - wraps the real export
        real_export(model, spec, path, **options)
        proto = onnx.load(str(path))
        bias = next(t for t in proto.graph.initializer if t.name.endswith("head.bias"))
        values = numpy_helper.to_array(bias).copy()
        values[0] += 1e-3  # logit 0 moves by 1e-3 on every image: 10x the tolerance, top-1 mostly unchanged
        bias.CopyFrom(numpy_helper.from_array(values, bias.name))
        onnx.save(proto, str(path))
        return path

    monkeypatch.setattr(onnx_format, "export", perturbed)
    result = _export(str(trained_run / "best.pt"), "--out", str(out_dir))
    assert result.exit_code == 3, result.output
    assert "max abs logit diff" in result.stderr and "exceeds 0.0001" in result.stderr
    # auto tries both exporters, and both files fail the gate
    assert "dynamo:" in result.stderr and "legacy:" in result.stderr
    last = result.stderr.strip().splitlines()[-1]  # progress lines come first, on stderr too
    assert last.startswith("error: no onnx export passed") and "Traceback" not in result.output
    assert _left(out_dir) == ["keep.txt"]


def test_weight_changed_after_torchscript_export_fails(
    trained_run: Path, out_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from cnnx.export.formats import torchscript
    from cnnx.train.runner import load_torchscript, save_torchscript

    real_export = torchscript.export

    def perturbed(model, spec, path, **options):  # noqa: ANN001, ANN202
        real_export(model, spec, path, **options)
        module, spec_json = load_torchscript(path, TORCHSCRIPT_SPEC_FILE)
        with torch.no_grad():
            module.head.bias[0] += 1e-4  # below fp32 ONNX's tolerance, 10x TorchScript's
        with open(path, "wb") as f:
            save_torchscript(module, f, {TORCHSCRIPT_SPEC_FILE: spec_json})
        return path

    monkeypatch.setattr(torchscript, "export", perturbed)
    result = _export(str(trained_run / "best.pt"), "--format", "torchscript", "--out", str(out_dir))
    assert result.exit_code == 3, result.output
    assert "exceeds 1e-05" in result.stderr and "script:" in result.stderr and "trace:" in result.stderr
    assert _left(out_dir) == ["keep.txt"]


def test_failed_export_into_a_new_folder_leaves_no_folder(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnx.export import parity

    strict = dataclasses.replace(parity.GATES["torchscript"], atol=0.0, min_agreement=1.01)
    monkeypatch.setitem(parity.GATES, "torchscript", strict)
    result = _export(str(trained_run / "best.pt"), "--format", "torchscript", "--out", str(tmp_path / "new"))
    assert result.exit_code == 3 and "top-1 agreement" in result.stderr
    assert not (tmp_path / "new").exists()


def test_int8_gate_failure_keeps_nothing_not_even_fp32(
    trained_run: Path, out_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnx.export import parity

    tiny = dataclasses.replace(parity.GATES["onnx-int8"], max_size_ratio=0.01)
    monkeypatch.setitem(parity.GATES, "onnx-int8", tiny)
    result = _export(str(trained_run / "best.pt"), "--int8", "--exporter", "legacy", "--out", str(out_dir), "--json")
    assert result.exit_code == 3, result.output
    assert "exceeds 1%" in result.stderr and "per-channel:" in result.stderr and "per-tensor:" in result.stderr
    assert "export without --int8" in result.stderr
    assert _left(out_dir) == ["keep.txt"]
    report = json.loads(result.stdout)  # --json: the failed gate's numbers, for scripts
    assert report["passed"] is False and report["failed_format"] == "onnx-int8"
    assert [a["method"] for a in report["attempts"]] == ["per-channel", "per-tensor"]
    assert all(0.01 < a["parity"]["size_ratio"] < 1 for a in report["attempts"])
    assert report["passed_formats"]["onnx"]["passed"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "torchscript", "--int8"], "--int8 quantises the ONNX export"),
        (["--opset", "9"], "--opset must be between 13 and 23"),
        (["--arch", "seed000-net"], "disagrees with the checkpoint"),
        (["--data-dir", "/nonexistent/mnist"], "MNIST not found"),
    ],
)
def test_bad_options_are_one_line_errors(trained_run: Path, tmp_path: Path, args: list[str], message: str) -> None:
    result = _export(str(trained_run / "best.pt"), "--out", str(tmp_path / "o"), *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()
