"""Distributed training: the real `torchrun ... -m cnnx train` with 2 CPU processes over Gloo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from cnnx.core.errors import ConfigError  # noqa: E402
from cnnx.train import distributed as ddp  # noqa: E402
from tests.support import MINI_MNIST, run_cli  # noqa: E402

COMMON = ["mnist", "--data-dir", str(MINI_MNIST), "--no-download", "--device", "cpu", "--no-plots", "--json"]
# 1,000 train images, global batch 64: 16 steps an epoch, the last one 40 images (20 per rank)
BATCH_64 = ["--batch-size", "64"]


def torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        str(nproc),
        "--standalone",
        "-m",
        "cnnx",
        "train",
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def weights(run: Path, name: str = "last.pt") -> dict[str, torch.Tensor]:
    return torch.load(run / name, map_location="cpu", weights_only=True)["model"]


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def test_two_gloo_processes_equal_one_process_with_the_same_global_batch(tmp_path: Path) -> None:
    # seed002-net has neither BatchNorm nor dropout, so 2 ranks x 55-56 images must give the
    # 1-process gradient of the same 111 images, shift augmentation included. 1,000 = 9 x 111 + 1:
    # the last step's single image leaves rank 1 nothing, which must add nothing (not NaN)
    # (outlier exposure off: its extra images are checked apart, in the run's own tests)
    # float32: bf16 (the default on CPUs with AMX) rounds each process's share differently
    args = [*COMMON, "--batch-size", "111", "--arch", "seed002-net", "--epochs", "2", "--outliers", "0", "--no-amp"]
    proc = torchrun(*args, "--out", str(tmp_path / "ddp"))
    summary = json.loads(proc.stdout)  # one JSON document: rank 1 printed nothing
    assert summary["processes"] == 2
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["best.pt", "last.pt", "metrics.json"]

    single = json.loads(run_cli("train", *args, "--out", str(tmp_path / "one"), check=True).stdout)
    assert single["processes"] == 1
    assert max_diff(weights(tmp_path / "ddp"), weights(tmp_path / "one")) < 1e-4
    assert abs(summary["final_accuracy"] - single["final_accuracy"]) <= 0.004  # 2 of 500 test digits
    for d, s in zip(summary["epoch_metrics"], single["epoch_metrics"], strict=False):
        assert d["train_loss"] == pytest.approx(s["train_loss"], rel=1e-4)
        assert d["test_loss"] == pytest.approx(s["test_loss"], rel=1e-4)


@pytest.mark.slow  # three torchrun launches: about 20 s on two cores
def test_distributed_resume_ends_with_the_weights_of_an_uninterrupted_run(tmp_path: Path) -> None:
    # seed000-net has dropout: each rank draws its own masks, so resume must restore every rank's RNG
    args = [*COMMON, *BATCH_64, "--arch", "seed000-net", "--epochs", "2", "--save-every", "1"]
    torchrun(*args, "--out", str(tmp_path / "full"))
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    shutil.copy(tmp_path / "full" / "epoch-001.pt", stopped / "last.pt")  # as if killed after epoch 1
    proc = torchrun("--resume", str(stopped), "--json")
    assert json.loads(proc.stdout)["epochs"] == 2
    full, resumed = weights(tmp_path / "full"), weights(stopped)
    assert all(torch.equal(full[k], resumed[k]) for k in full)


def test_batchnorm_network_trains_in_two_processes(tmp_path: Path) -> None:
    # the default network keeps per-rank batch statistics: close to, not equal to, one process
    summary = json.loads(torchrun(*COMMON, *BATCH_64, "--epochs", "2", "--out", str(tmp_path / "bn")).stdout)
    assert summary["arch"] == "mnist-bn16" and summary["processes"] == 2
    assert summary["final_accuracy"] > 0.8
    ckpt = torch.load(tmp_path / "bn" / "last.pt", weights_only=True)
    assert len(ckpt["rng"]["ranks"]) == 2
    assert not any(k.startswith("module.") for k in ckpt["model"])  # the bare model, loadable by export


def test_world_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert ddp.world_from_env() == ddp.World() and not ddp.World().enabled
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    w = ddp.world_from_env()
    assert (w.rank, w.size, w.local_rank, w.is_main) == (3, 4, 1, False)
    assert list(range(10))[w.part(10)] == [3, 7]
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ConfigError, match="torchrun"):
        ddp.world_from_env()
