"""The openvino format: OpenVINO IR (.xml + .bin) made from the fp32 ONNX file, loaded back by OpenVINO's
CPU runtime, gated as fp32, refused when broken (exit 3, nothing left behind)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from cnnx.cli import main

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ov = pytest.importorskip("openvino", reason="the openvino extra is not installed: pip install 'cnnx[openvino]'")


@pytest.fixture(scope="module")
def report(exported: Path) -> dict[str, Any]:
    """parity.json of the session's `cnnx export --format all` (tests/conftest.py: mnist.* in ``exported``)."""
    return json.loads((exported / "parity.json").read_text())


def test_all_writes_openvino_ir_through_its_gate(exported: Path, report: dict[str, Any]) -> None:
    assert (exported / "mnist.xml").is_file() and (exported / "mnist.bin").is_file()
    r = report["formats"]["openvino"]
    assert r["passed"] and r["method"] == "from-onnx" and r["top1_agreement"] == 1.0
    assert r["real"]["max_abs_diff"] <= 1e-4 and r["random"]["max_abs_diff"] <= 1e-4
    sizes = (exported / "mnist.xml").stat().st_size + (exported / "mnist.bin").stat().st_size
    assert r["size_bytes"] == sizes and (exported / "mnist.bin").stat().st_size > 250_000  # float32, not fp16


def test_ir_carries_the_spec_and_runs_like_the_onnx_file(exported: Path) -> None:
    from cnnx.core.contract import normalise
    from cnnx.core.idx import read_idx
    from cnnx.core.spec import ModelSpec
    from tests.support import MINI_MNIST

    core = ov.Core()
    model = core.read_model(str(exported / "mnist.xml"))
    spec = ModelSpec.from_dict(json.loads(model.get_rt_info(["cnnx", "spec"]).astype(str)))
    assert spec.extra["format"] == "openvino" and spec.extra["parity"]["passed"] and spec.arch == "mnist-bn16"
    assert model.has_rt_info(["cnnx", "selfcheck"])
    assert [sorted(p.get_names()) for p in model.inputs] == [["input"]]
    x = normalise(read_idx(MINI_MNIST / "t10k-images-idx3-ubyte.gz")[:37, None], spec.mean, spec.std)
    got = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(x)[0]
    import onnxruntime as ort

    session = ort.InferenceSession(str(exported / "mnist.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(got, session.run(None, {"input": x})[0], rtol=0, atol=1e-4)


def test_weight_changed_in_openvino_file_fails_and_leaves_nothing(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from onnx import numpy_helper

    from cnnx.export.formats import openvino_ir

    real_export = openvino_ir.export
    out = tmp_path / "models"
    out.mkdir()
    (out / "keep.txt").write_text("mine")

    def perturbed(model, spec, path, *, built, **options):  # noqa: ANN001, ANN202 - wraps the real export
        proto = onnx.load(str(built["onnx"]))
        bias = next(t for t in proto.graph.initializer if t.name.endswith("head.bias"))
        values = numpy_helper.to_array(bias).copy()
        values[0] += 1e-3  # 10x the tolerance; top-1 mostly unchanged
        bias.CopyFrom(numpy_helper.from_array(values, bias.name))
        source = Path(path).parent / "perturbed.onnx"
        onnx.save(proto, str(source))
        return real_export(model, spec, path, built={**built, "onnx": source}, **options)

    monkeypatch.setattr(openvino_ir, "export", perturbed)
    args = ["export", str(trained_run / "best.pt"), "--format", "openvino", "--exporter", "legacy", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 3, result.output
    assert "no openvino export passed" in result.stderr and "exceeds 0.0001" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_infer_eval_and_verify_run_the_xml_file(exported: Path, digit_pngs: Path, tmp_path: Path) -> None:
    from tests.support import MINI_MNIST, infer_json, run_cli

    files = sorted(digit_pngs.iterdir())[:20]
    assert [r["label"] for r in infer_json(exported / "mnist.xml", *files)] == [
        r["label"] for r in infer_json(exported / "mnist.onnx", *files)
    ]
    evals = [
        json.loads(run_cli("eval", str(exported / n), "--data", str(MINI_MNIST), "--json", check=True).stdout)
        for n in ("mnist.xml", "mnist.onnx")
    ]
    assert evals[0]["accuracy"] == evals[1]["accuracy"] and evals[0]["images"] == 500
    proc = run_cli("verify", str(exported / "mnist.xml"), check=True)
    assert proc.stdout.startswith("pass: ") and "(openvino)" in proc.stdout and "openvino " in proc.stdout
    lone = tmp_path / "lone.xml"  # a graph without its weights beside it
    shutil.copy(exported / "mnist.xml", lone)
    proc = run_cli("infer", "--model", str(lone), str(files[0]))
    assert proc.returncode == 2 and "has no weights file lone.bin beside it" in proc.stderr
    # a damaged graph and weights cut short: OpenVINO's cause, not only the source line that raised it
    (tmp_path / "bad.xml").write_bytes((exported / "mnist.xml").read_bytes()[:400])
    shutil.copy(exported / "mnist.bin", tmp_path / "bad.bin")
    (tmp_path / "short.xml").write_bytes((exported / "mnist.xml").read_bytes())
    (tmp_path / "short.bin").write_bytes((exported / "mnist.bin").read_bytes()[:1000])
    for name, cause in (("bad.xml", "at offset 399"), ("short.xml", "Incorrect weights in bin file!")):
        for command in (("verify", str(tmp_path / name)), ("infer", "--model", str(tmp_path / name), str(files[0]))):
            proc = run_cli(*command)
            line = proc.stderr.strip().splitlines()[-1]
            assert proc.returncode == 2 and "is not a usable OpenVINO model: " in line and cause in line, proc.stderr
            assert "export it again" in line


def test_a_signal_after_an_openvino_export_reaches_python(trained_run: Path, tmp_path: Path) -> None:
    """OpenVINO's CPU plugin gives the compiling thread an alternate signal stack and frees it with the
    model; before cnnx.core.openvinoio kept the thread's own, the next SIGALRM (or Ctrl-C) after an
    export in the same process jumped onto freed memory: SIGSEGV instead of the Python handler."""
    import subprocess
    import sys

    from tests.support import MINI_MNIST, REPO

    code = (
        "import signal, sys, time\n"
        "from click.testing import CliRunner\n"
        "from cnnx.cli import main\n"
        f"args = ['export', {str(trained_run / 'best.pt')!r}, '--format', 'openvino', '--exporter', 'legacy',\n"
        f"        '--data-dir', {str(MINI_MNIST)!r}, '--out', {str(tmp_path / 'm')!r}]\n"
        "assert CliRunner().invoke(main, args).exit_code == 0\n"
        "class Late(Exception):\n    pass\n"
        "def late(signum, frame):\n    raise Late\n"
        "signal.signal(signal.SIGALRM, late)\n"
        "signal.alarm(1)\n"
        "try:\n    time.sleep(5)\nexcept Late:\n    print('handled')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "handled", (proc.returncode, proc.stderr[-2000:])
