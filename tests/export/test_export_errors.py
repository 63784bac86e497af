"""`cnnx export` errors and wording: an --out where no file can be written (one line, exit 2, before any
format is made), a --std of 0, one thread said as one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import run_cli

pytest.importorskip("torch")


@pytest.mark.parametrize("under", ["best.pt", "f.txt"])
def test_an_out_below_a_file_is_refused_in_one_line(trained_run: Path, tmp_path: Path, under: str) -> None:
    blocker = trained_run / "best.pt" if under == "best.pt" else tmp_path / "f.txt"
    if under == "f.txt":
        blocker.write_text("not a folder")
    out = blocker / "sub" / "deeper"
    proc = run_cli("export", str(trained_run / "best.pt"), "--out", str(out), "--threads", "1")
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: cannot write the export folder {out}: {blocker} is a file, not a folder (pick another --out)"
    )
    assert "passed parity" not in proc.stderr  # refused before any format was made


def test_an_out_that_is_a_file_is_refused_in_one_line(trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "notes.txt"  # no export suffix: read as a folder, and a file is in its place
    out.write_text("mine")
    proc = run_cli("export", str(trained_run), "--out", str(out), "--threads", "1")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: cannot write the export folder {out}: {out} is a file, not a folder (pick another --out)"
    )
    assert out.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_zero_std_says_which_value(trained_run: Path, tmp_path: Path) -> None:
    proc = run_cli("export", str(trained_run), "--std", "0", "--out", str(tmp_path / "m.onnx"))
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == "error: std must be positive, got 0"


def test_one_thread_is_said_as_one(trained_run: Path, tmp_path: Path) -> None:
    proc = run_cli("export", str(trained_run), "--out", str(tmp_path / "m.onnx"), "--threads", "1", check=True)
    assert proc.stdout.splitlines()[0].endswith("; torch and onnxruntime on 1 thread")
