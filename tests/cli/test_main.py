"""`python -m cnnx` as users start it, from wherever they stand."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cnnx
from tests.support import REPO


def test_python_m_cnnx_works_beside_a_folder_named_cnnx(tmp_path: Path) -> None:
    # the parent of a clone holds a folder named cnnx: Python would take it for the package
    (tmp_path / "cnnx" / "docs").mkdir(parents=True)
    proc = subprocess.run(
        [sys.executable, "-m", "cnnx", "--version"], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"cnnx, version {cnnx.__version__}"


def test_a_command_whose_extra_is_missing_names_the_extra_to_install(tmp_path: Path) -> None:
    # a torch that cannot be imported, as on a device with the base install only
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("raise ImportError('No module named torch', name='torch')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    proc = subprocess.run(
        [sys.executable, "-m", "cnnx", "summary", "mnist-bn"], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == (
        'error: this command needs torch, which is not installed (install the training side: pip install "cnnx[train]")'
    )
