"""A training run folder given to the edge commands (`cnnx infer --model RUN`, `cnnx verify RUN`): they run
the ONNX file `cnnx export RUN` wrote into it, without torch; a folder not exported yet is one line saying
to export it first."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.support import cnnx_without, run_cli

pytest.importorskip("torch")  # the fixtures train a run and export it

DIGIT = Path(__file__).resolve().parents[2] / "cnnx" / "samples" / "digits" / "mnist-7.png"


def run_folder(trained_run: Path, folder: Path, onnx_model: Path | None) -> Path:
    """A copy of ``trained_run``'s checkpoints, with ``onnx_model`` (exported from its best.pt) where
    `cnnx export RUN` puts it, RUN/best.onnx, when given."""
    folder.mkdir()
    for name in ("best.pt", "last.pt", "metrics.json"):
        shutil.copy(trained_run / name, folder / name)
    if onnx_model is not None:
        shutil.copy(onnx_model, folder / "best.onnx")
    return folder


def test_infer_and_verify_run_the_onnx_file_exported_into_a_run_folder_without_torch(
    trained_run: Path, onnx_model: Path, tmp_path: Path
) -> None:
    run = run_folder(trained_run, tmp_path / "run", onnx_model)
    proc = cnnx_without("torch", "infer", str(DIGIT), "--model", str(run), "--json", "--top-k", "3")
    assert proc.returncode == 0, proc.stderr
    *lines, modules = proc.stdout.strip().splitlines()
    assert modules == "[]"  # neither torch nor onnx was imported
    direct = run_cli("infer", str(DIGIT), "--model", str(onnx_model), "--json", "--top-k", "3", check=True)
    assert [json.loads(x) for x in lines] == [json.loads(x) for x in direct.stdout.splitlines()]

    proc = run_cli("verify", str(run), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["passed"] is True and result["model"] == str(run / "best.onnx")


def test_a_run_folder_not_exported_yet_says_to_export_it_first(trained_run: Path, tmp_path: Path) -> None:
    run = run_folder(trained_run, tmp_path / "run", None)
    said = (
        f"error: {run} is a training run folder with no exported model in it (no best.onnx) "
        f"(export it first: cnnx export {run}, which writes {run / 'best.onnx'})"
    )
    for args in (["infer", str(DIGIT), "--model", str(run)], ["verify", str(run)], ["serve", "--model", str(run)]):
        proc = cnnx_without("torch", *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.strip().splitlines() == [said], args
        assert proc.stdout.strip().splitlines()[-1] == "[]", args  # and torch stayed out


def test_a_run_folder_without_best_pt_means_last_onnx(trained_run: Path, onnx_model: Path, tmp_path: Path) -> None:
    """As for export, eval and summary: a run folder with no best.pt means its last.pt, whose export is last.onnx."""
    run = run_folder(trained_run, tmp_path / "run", None)
    (run / "best.pt").unlink()
    proc = run_cli("verify", str(run))
    assert proc.returncode == 2 and "(no last.onnx)" in proc.stderr and f"cnnx export {run}," in proc.stderr
    shutil.copy(onnx_model, run / "last.onnx")
    proc = run_cli("verify", str(run), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["model"] == str(run / "last.onnx")
