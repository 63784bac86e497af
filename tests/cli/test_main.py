"""`python -m cnnx` as users start it, from wherever they stand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cnnx


def test_python_m_cnnx_works_beside_a_folder_named_cnnx(tmp_path: Path) -> None:
    # the parent of a clone holds a folder named cnnx: Python would take it for the package
    (tmp_path / "cnnx" / "docs").mkdir(parents=True)
    proc = subprocess.run(
        [sys.executable, "-m", "cnnx", "--version"], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"cnnx, version {cnnx.__version__}"
