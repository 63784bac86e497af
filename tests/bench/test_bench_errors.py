"""`cnnx bench --plot` where no chart can be written: refused before any work; and a chart that still fails
at the end costs no result, the table printed first."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support import run_cli

pytest.importorskip("torch")


@pytest.fixture
def run(trained_run: Path, tmp_path: Path) -> Path:
    """A run folder of its own holding only best.pt: bench writes its exports beside the checkpoint."""
    folder = tmp_path / "run"
    folder.mkdir()
    shutil.copy(trained_run / "best.pt", folder / "best.pt")
    return folder


def test_an_unwritable_plot_is_refused_before_any_work(run: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "f.txt"
    blocker.write_text("not a folder")
    chart = blocker / "b.png"
    proc = run_cli("bench", str(run), "--plot", str(chart), "--seconds", "0.1", "--cold-runs", "1")
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: cannot write the chart {chart}: {blocker} is a file, not a folder (pick another --plot, or --no-plot)"
    ]
    assert sorted(p.name for p in run.iterdir()) == ["best.pt"]  # nothing exported, nothing measured


@pytest.mark.slow  # a whole bench run: one to two minutes on two busy cores
def test_a_chart_that_fails_at_the_end_keeps_the_table(run: Path) -> None:
    # best.onnx/ is a folder that can be made when the bench starts; the bench then exports best.onnx as a file
    chart = run / "best.onnx" / "b.png"
    proc = run_cli("bench", str(run), "--plot", str(chart), "--seconds", "0.05", "--cold-runs", "1")
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout.startswith("format ") and "ONNX Runtime fp32 " in proc.stdout  # the results, whole
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: cannot write {chart}: {run / 'best.onnx'} is a file, not a folder (pick another --plot, or --no-plot)"
    )
