"""The executorch format: an ExecuTorch program (.pte, XNNPACK) made from the torch module, loaded back by
ExecuTorch's Python runtime, gated as fp32 on real and random inputs, its spec beside it in .pte.json, and
refused when broken (exit 3, nothing left behind)."""

from __future__ import annotations

import json
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
    assert (exported / "mnist.pte").is_file() and (exported / "mnist.pte.json").is_file()
    r = report["formats"]["executorch"]
    assert r["passed"] and r["method"] == "xnnpack" and r["top1_agreement"] == 1.0
    assert r["real"]["max_abs_diff"] <= 1e-4 and r["random"]["max_abs_diff"] <= 1e-4
    shipped = ("mnist.pte", "mnist.pte.json")  # the size counts the spec beside the program, as for every format
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
    assert spec.extra["parity"]["passed"] and spec.arch == "mnist-bn" and "executorch" in spec.versions
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


def test_inspect_reads_a_program_and_its_spec_without_loading_it(exported: Path) -> None:
    from tests.support import run_cli

    info = json.loads(run_cli("inspect", str(exported / "mnist.pte"), "--json", check=True).stdout)
    assert info["kind"] == "executorch" and info["spec"]["arch"] == "mnist-bn"
    assert info["spec"]["extra"]["delegate"] == "xnnpack" and info["parity"]["passed"]
    assert set(info["files"]) == {"mnist.pte", "mnist.pte.json"} and info["selfcheck"] is None
