"""`cnnx verify MODEL` run as a user runs it: pass (0), fail (3), unusable file (2); never loads torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO, run_cli


def test_verify_passes_with_one_line_naming_difference_and_tolerance(exported: Path) -> None:
    for name in ("mnist.onnx", "mnist.ort"):
        proc = run_cli("verify", str(exported / name))
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        (line,) = proc.stdout.splitlines()
        assert line.startswith("pass: ") and "(tolerance 0.0001)" in line and "top-1 100% of 8 images" in line


def test_verify_json_and_no_torch(exported: Path) -> None:
    code = (
        "import sys\n"
        "from cnnx.cli import main\n"
        f"try:\n    main(['verify', {str(exported / 'mnist.fp16.onnx')!r}, '--json'])\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx', 'PIL')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result_text, modules = proc.stdout.rsplit("\n", 2)[0], proc.stdout.strip().splitlines()[-1]
    assert modules == "[]"  # neither torch nor onnx, nor even Pillow: pixels come from the file
    result = json.loads(result_text)
    assert result["passed"] is True and result["format"] == "onnx-fp16" and result["atol"] == 0.02
    assert set(result) >= {"max_abs_diff", "max_abs_diff_vs_checkpoint", "top1_agreement", "runtime", "seconds"}


def test_verify_fails_with_exit_3_and_the_numbers(exported: Path, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    proto = onnx.load(str(exported / "mnist.onnx"))
    bias = next(t for t in proto.graph.initializer if t.name.endswith("head.bias"))
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + 0.01, bias.name))
    onnx.save(proto, str(tmp_path / "drifted.onnx"))
    proc = run_cli("verify", str(tmp_path / "drifted.onnx"), "--json")
    assert proc.returncode == 3, proc.stderr
    assert json.loads(proc.stdout)["passed"] is False  # --json: the numbers of the failed check too
    (line,) = proc.stderr.splitlines()
    assert line.startswith("error: ") and "fails its self-check on this device" in line and "tolerance 0.0001" in line
    text = run_cli("verify", str(tmp_path / "drifted.onnx"))  # without --json: FAIL on stdout, as pass is
    (out,) = text.stdout.splitlines()
    assert text.returncode == 3 and out.startswith(f"FAIL: {tmp_path / 'drifted.onnx'} (onnx): max |logit diff| 0.01")
    assert text.stderr.startswith("error: ") and "fails its self-check" in text.stderr


def test_a_file_without_self_check_or_no_model_is_a_one_line_error(exported: Path, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from cnnx.core.selfcheck import KEY

    proto = onnx.load(str(exported / "mnist.onnx"))  # as files exported before the self-check existed
    keep = [p for p in proto.metadata_props if p.key != KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    onnx.save(proto, str(tmp_path / "older.onnx"))
    del proto.metadata_props[:]  # an ONNX file from another tool: no spec either
    onnx.save(proto, str(tmp_path / "foreign.onnx"))
    junk = tmp_path / "notes.onnx"
    junk.write_text("not a model")
    cases = (
        (tmp_path / "older.onnx", "carries no self-check"),
        (tmp_path / "foreign.onnx", "not made by `cnnx export`, so there is nothing to verify it against"),
        (junk, "is not a usable ONNX model"),
    )
    for path, message in cases:
        proc = run_cli("verify", str(path))
        assert proc.returncode == 2 and proc.stdout == ""
        (line,) = proc.stderr.splitlines()
        assert line.startswith("error: ") and message in line and "Traceback" not in proc.stderr
        assert "--mean" not in line.split("(")[0]  # infer's options are not verify's
        # --json: the same failure as JSON on stdout, for a caller that reads only that
        proc = run_cli("verify", str(path), "--json")
        answer = json.loads(proc.stdout)
        assert proc.returncode == 2 and answer["passed"] is False and message in answer["error"]


def test_an_executorch_program_without_executorch_names_the_extra_and_the_bundled_program(tmp_path: Path) -> None:
    """A .pte runs in ExecuTorch's Python runtime (it imports torch): without it, or without torch (the base
    install), one line names the extra and the check that needs no Python, and nothing else loads."""
    from tests.support import cnnx_without

    program = tmp_path / "best.pte"
    program.write_bytes(b"\x00" * 64)  # the runtime is looked for before the file is read
    for blocked in ("executorch", "torch"):
        proc = cnnx_without(blocked, "verify", str(program))
        assert proc.returncode == 2, proc.stderr
        (line,) = proc.stderr.splitlines()
        assert line.startswith("error: ") and "is an ExecuTorch program" in line and "Traceback" not in proc.stderr
        assert 'pip install "cnnx[executorch]"' in line and "best.bpte" in line and "executor_runner" in line
