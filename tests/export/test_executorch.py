"""The executorch format: an ExecuTorch program (.pte, XNNPACK) made from the torch module, loaded back by
ExecuTorch's Python runtime, gated as fp32 on real and random inputs, its spec and self-check beside it in
.pte.json, its bundled program (.bpte) beside that, and refused when broken (exit 3, nothing left behind).
`cnnx verify` runs the self-check with ExecuTorch's Python runtime; ExecuTorch's own bundled-program
verification runs the .bpte."""

from __future__ import annotations

import dataclasses
import json
import shutil
from importlib.metadata import version as _version
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("executorch", reason="the executorch extra is not installed: pip install 'cnnx[executorch]'")


@pytest.fixture(scope="module")
def report(exported: Path) -> dict[str, Any]:
    """parity.json of the session's `cnnx export --format all` (tests/conftest.py: mnist.* in ``exported``)."""
    return json.loads((exported / "parity.json").read_text())


def test_all_writes_an_executorch_program_through_its_gate(exported: Path, report: dict[str, Any]) -> None:
    assert all((exported / n).is_file() for n in ("mnist.pte", "mnist.pte.json", "mnist.bpte"))
    r = report["formats"]["executorch"]
    assert r["passed"] and r["method"] == "xnnpack" and r["top1_agreement"] == 1.0
    assert r["real"]["max_abs_diff"] <= 1e-4 and r["random"]["max_abs_diff"] <= 1e-4
    # the size counts the spec beside the program, as for every format, and not the bundled program (a check
    # holding a second copy of the program, not shipped with it)
    shipped = ("mnist.pte", "mnist.pte.json")
    assert r["size_bytes"] == sum((exported / n).stat().st_size for n in shipped)


def test_the_program_carries_its_spec_beside_it_and_runs_any_batch_like_the_onnx_file(exported: Path) -> None:
    import onnxruntime as ort

    from cnnx.core.contract import normalise
    from cnnx.core.idx import read_idx
    from cnnx.export.formats import executorch_pte
    from tests.support import MINI_MNIST

    loaded = executorch_pte.load(exported / "mnist.pte", 1)
    spec = loaded.spec()
    assert spec.extra["format"] == "executorch" and spec.extra["delegate"] == "xnnpack"
    assert spec.extra["parity"]["passed"] and spec.arch == "mnist-bn16" and "executorch" in spec.versions
    session = ort.InferenceSession(str(exported / "mnist.onnx"), providers=["CPUExecutionProvider"])
    x = normalise(read_idx(MINI_MNIST / "t10k-images-idx3-ubyte.gz")[:150, None], spec.mean, spec.std)
    for n in (1, 37, executorch_pte.MAX_BATCH, 150):  # past the program's bound: run in pieces
        got = loaded.run(x[:n])
        assert got.shape == (n, 10)
        np.testing.assert_allclose(got, session.run(None, {"input": x[:n]})[0], rtol=0, atol=1e-4)


@pytest.mark.slow  # both ways of making the program, each exported and gated (about 25 s)
def test_weight_changed_in_the_program_fails_and_leaves_nothing(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnx.export.formats import executorch_pte
    from tests.support import export_with_nudged_bias

    result, left = export_with_nudged_bias(
        executorch_pte, "executorch", trained_run / "best.pt", tmp_path / "models", monkeypatch
    )
    assert result.exit_code == 3, result.output
    assert "no executorch export passed" in result.stderr and "exceeds 0.0001" in result.stderr
    assert "xnnpack:" in result.stderr and "portable:" in result.stderr  # both ways were tried
    assert left == ["keep.txt"]


def test_the_edge_runtime_names_what_runs_a_program(exported: Path, digit_pngs: Path) -> None:
    from tests.support import run_cli

    proc = run_cli("infer", "--model", str(exported / "mnist.pte"), str(sorted(digit_pngs.iterdir())[0]))
    assert proc.returncode == 2 and "is an ExecuTorch program" in proc.stderr and "Traceback" not in proc.stderr
    # the bundled program beside it is not an ONNX file (it was opened as one): the program is what verify checks
    for command in (("verify", str(exported / "mnist.bpte")), ("infer", "--model", str(exported / "mnist.bpte"), ".")):
        proc = run_cli(*command)
        line = proc.stderr.strip().splitlines()[-1]
        assert proc.returncode == 2 and "is ExecuTorch's bundled program" in line and "cnnx verify NAME.pte" in line


def test_inspect_reads_a_program_and_its_spec_without_loading_it(exported: Path) -> None:
    from tests.support import run_cli

    info = json.loads(run_cli("inspect", str(exported / "mnist.pte"), "--json", check=True).stdout)
    assert info["kind"] == "executorch" and info["spec"]["arch"] == "mnist-bn16"
    assert info["spec"]["extra"]["delegate"] == "xnnpack" and info["parity"]["passed"]
    assert set(info["files"]) == {"mnist.pte", "mnist.pte.json"}
    assert info["selfcheck"] == {"images": 8, "format": "executorch", "atol": 1e-4}
    assert info["bundled_program"] == {"file": "mnist.bpte", "size_bytes": (exported / "mnist.bpte").stat().st_size}
    text = run_cli("inspect", str(exported / "mnist.pte"), check=True).stdout
    assert "self-check:       8 test images, |d|<=0.0001 (executorch gate)" in text and "mnist.bpte (" in text


def test_verify_runs_the_self_check_with_executorch_and_says_so(exported: Path) -> None:
    """The same JSON as every format's `cnnx verify`, the runtime naming ExecuTorch, its version and delegate."""
    from tests.support import run_cli

    onnx = json.loads(run_cli("verify", str(exported / "mnist.onnx"), "--json", check=True).stdout)
    proc = run_cli("verify", str(exported / "mnist.pte"), "--json")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr  # ExecuTorch's native logging held back
    result = json.loads(proc.stdout)
    assert set(result) == set(onnx) and result["passed"] is True and result["format"] == "executorch"
    assert result["images"] == 8 and result["atol"] == 1e-4 and result["top1_agreement"] == 1.0
    assert 0 < result["max_abs_diff"] <= 1e-4 and result["compared_with"] == "checkpoint"
    version = _version("executorch")
    assert result["runtime"] == f"ExecuTorch {version} (xnnpack delegate; Python runtime, with torch)"


def test_verify_fails_with_exit_3_when_the_logits_beside_the_program_moved(exported: Path, tmp_path: Path) -> None:
    from cnnx.core.selfcheck import KEY, SelfCheck
    from tests.support import run_cli

    shutil.copy(exported / "mnist.pte", tmp_path / "mnist.pte")
    beside = json.loads((exported / "mnist.pte.json").read_text())
    check = SelfCheck.decode(beside[KEY])
    moved = dataclasses.replace(check, logits=check.logits + np.float32(0.01))  # one logit step a device might drift
    (tmp_path / "mnist.pte.json").write_text(json.dumps({**beside, KEY: moved.encode()}))
    proc = run_cli("verify", str(tmp_path / "mnist.pte"))
    assert proc.returncode == 3 and proc.stdout.startswith("FAIL: ") and "(executorch)" in proc.stdout
    (line,) = proc.stderr.splitlines()
    assert line.startswith("error: ") and "fails its self-check on this device" in line and "tolerance 0.0001" in line
    assert "another version of ExecuTorch" in line


def test_a_program_cut_short_is_named_so_by_inspect_and_verify(exported: Path, tmp_path: Path) -> None:
    """Its spec lies beside it, whole: without the header's size, inspect showed the program as fine and
    ExecuTorch's loader said only "error: 0x23"."""
    from tests.support import run_cli

    data = (exported / "mnist.pte").read_bytes()
    (tmp_path / "mnist.pte").write_bytes(data[: len(data) // 3])
    shutil.copy(exported / "mnist.pte.json", tmp_path / "mnist.pte.json")
    for command in ("inspect", "verify"):
        proc = run_cli(command, str(tmp_path / "mnist.pte"))
        assert proc.returncode == 2 and proc.stdout == "", proc.stdout
        assert proc.stderr.startswith(f"error: {tmp_path / 'mnist.pte'} is cut short: {len(data) // 3:,} bytes of the ")
        assert f"{len(data):,} its header gives (copy it again" in proc.stderr


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")  # executorch's own imports
def test_the_bundled_program_loads_back_and_passes_in_executorch(exported: Path) -> None:
    """ExecuTorch's own bundled-program verification, as its C++ executor_runner runs it on a device: the
    .bpte's test case passes within the self-check's tolerance, and one whose expected logits moved fails."""
    from executorch.devtools import BundledProgram
    from executorch.devtools.bundled_program.config import MethodTestCase, MethodTestSuite
    from executorch.devtools.bundled_program.serialize import serialize_from_bundled_program_to_flatbuffer
    from executorch.extension.pybindings.portable_lib import _load_bundled_program_from_buffer

    from cnnx.core.contract import normalise
    from cnnx.core.selfcheck import KEY, SelfCheck
    from cnnx.core.spec import ModelSpec

    beside = json.loads((exported / "mnist.pte.json").read_text())
    check, spec = SelfCheck.decode(beside[KEY]), ModelSpec.from_dict(beside)
    bundle = _load_bundled_program_from_buffer((exported / "mnist.bpte").read_bytes())
    (out,) = bundle.verify_result_with_bundled_expected_output("forward", 0, rtol=0.0, atol=check.atol)
    np.testing.assert_allclose(out.numpy(), check.logits, rtol=0, atol=check.atol)  # the self-check's images went in
    assert out.shape == (8, 10)

    x = torch.from_numpy(normalise(check.pixels, spec.mean, spec.std))
    moved = MethodTestCase(inputs=[x], expected_outputs=[torch.from_numpy(check.logits + np.float32(0.01))])
    program = BundledProgram(None, [MethodTestSuite("forward", [moved])], pte_file_path=str(exported / "mnist.pte"))
    wrong = _load_bundled_program_from_buffer(serialize_from_bundled_program_to_flatbuffer(program))
    with pytest.raises(RuntimeError, match="verification failed"):
        wrong.verify_result_with_bundled_expected_output("forward", 0, rtol=0.0, atol=check.atol)
