"""Shared fixtures: the shipped mini MNIST (1,000 train / 500 test real digits) and a small trained run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

MINI_MNIST = Path(__file__).parent / "data" / "mnist"
REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            check: bool = False) -> subprocess.CompletedProcess:
    """Run the real `cnnx` command in a subprocess, as a user would."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "cnnx", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"cnnx {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def mini_mnist() -> Path:
    return MINI_MNIST


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-epoch run of the default architecture on the mini MNIST (a few seconds on a CPU)."""
    pytest.importorskip("torch")
    from cnnx.train.config import TrainConfig
    from cnnx.train.loop import train

    out = tmp_path_factory.mktemp("run") / "run"
    train(TrainConfig(epochs=2, batch_size=32, data_dir=str(MINI_MNIST), download=False, out=str(out), device="cpu"))
    return out
