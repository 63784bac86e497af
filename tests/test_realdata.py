"""Real-data checks on the full MNIST (60,000 / 10,000). Run with `pytest -m realdata`.

The folder comes from $CNNX_MNIST_DIR, else ../shared/data/mnist beside the repository.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support import REPO, run_cli

FULL_MNIST = Path(os.environ.get("CNNX_MNIST_DIR", REPO.parent / "shared" / "data" / "mnist"))

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not FULL_MNIST.is_dir(), reason=f"full MNIST not found at {FULL_MNIST}"),
]


def test_one_epoch_on_full_mnist_reaches_98_5(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    proc = run_cli(
        "train",
        "mnist",
        "--preset",
        "one-epoch",
        "--data-dir",
        str(FULL_MNIST),
        "--no-download",
        "--out",
        str(tmp_path / "run"),
        "--json",
        check=True,
    )
    result = json.loads(proc.stdout)
    assert result["final_accuracy"] >= 0.985, result["final_accuracy"]
