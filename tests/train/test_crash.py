"""Crashes during training lose nothing: SIGKILL at random points (some inside a checkpoint write),
Ctrl-C, and a full disk, all on the real `cnnx train` in subprocesses.

The kill/resume procedure is ``cnnx.testing.crash``, which bench/kill_resume.py runs too. A run of
``seed000-net`` (dropout: the RNG state matters) on the shipped mini MNIST is killed with SIGKILL
again and again and resumed each time; after every kill every ``*.pt`` in the run folder must load
with cnnx's own loader, and at the end the weights must equal, tensor for tensor, those of a run that
was never interrupted (same seed, CPU, one thread).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from cnnx.core.errors import CheckpointError  # noqa: E402
from cnnx.testing.crash import (  # noqa: E402
    ARCH,
    MINI_MNIST,
    KillResume,
    Training,
    check_checkpoints,
    kill_resume,
    reference_run,
    same_weights,
    temp_files,
    train_args,
)
from cnnx.train import checkpoint as ckpt  # noqa: E402
from tests.support import REPO  # noqa: E402

EPOCHS, SEED = 20, 0


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return reference_run(tmp_path_factory.mktemp("reference"), EPOCHS, SEED)


@pytest.mark.slow  # ten SIGKILLs and resumes: about 45 s on two cores
def test_sigkill_at_random_points_then_resume_gives_identical_weights(tmp_path: Path, uninterrupted: Path) -> None:
    result = kill_resume(tmp_path, kills=10, seed=SEED, rng_seed=1, epochs=EPOCHS, reference=uninterrupted, log=print)
    print(result.summary())
    assert result.kills == 10 and result.resumes >= 1
    assert result.kills_aimed_at_writes == 4
    assert result.kills_in_write >= 1, "no kill landed inside a checkpoint write"
    assert max(result.epoch_at_each_kill) > 0  # the kills did not all land before the first checkpoint
    assert result.temp_files_left_at_end == 0  # what killed writers left was swept by later writes
    assert result.identical, f"weights differ from the uninterrupted run: {result.tensors_different}"
    assert result.metrics_identical


def test_sigint_saves_whole_epochs_says_how_to_resume_and_resumes_identically(
    tmp_path: Path, uninterrupted: Path
) -> None:
    run = tmp_path / "run"
    job = Training(train_args(run, EPOCHS, SEED))
    deadline = time.monotonic() + 120
    while job.alive() and not (run / ckpt.LAST).is_file() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.13)  # into a later epoch: mid-epoch, not at a boundary, most of the time
    job.signal(signal.SIGINT)
    assert job.wait() == 130, job.stderr
    saved = ckpt.load_checkpoint(run / "last.pt")["epoch"]
    assert 1 <= saved < EPOCHS
    last_line = job.lines[-1]
    assert "Traceback" not in job.stderr
    assert last_line == (
        f"interrupted during epoch {saved + 1} of {EPOCHS}; {run}/last.pt holds the {saved} "
        f"finished epoch{'s' if saved != 1 else ''} (the unfinished one is redone): "
        f"cnnx train --resume {run}"
    )
    assert temp_files(run) == []
    resumed = Training(["train", "--resume", str(run)])
    assert resumed.wait() == 0, resumed.stderr
    assert f"resuming after epoch {saved}" in resumed.stderr
    result = KillResume()
    same_weights(uninterrupted, run, result)
    assert result.identical and result.metrics_identical, result.tensors_different


def test_sigint_before_the_first_epoch_says_nothing_was_saved(tmp_path: Path) -> None:
    run = tmp_path / "run"
    job = Training(train_args(run, EPOCHS, SEED))
    assert job.training.wait(120)
    job.signal(signal.SIGINT)  # the first epoch takes ~0.1 s: no checkpoint yet
    assert job.wait() == 130, job.stderr
    if (run / ckpt.LAST).is_file():
        pytest.skip("the machine finished an epoch before the signal arrived")
    assert job.lines[-1] == "interrupted before the first epoch finished; nothing was saved: run the same command again"


def test_stray_temp_files_are_ignored_on_resume_and_swept_by_the_next_write(tmp_path: Path) -> None:
    """What SIGKILL inside a write leaves: a temp file whose writer is gone. A live writer's is kept."""
    run = tmp_path / "run"
    job = Training(train_args(run, 2, SEED))
    assert job.wait() == 0, job.stderr
    good = (run / "last.pt").read_bytes()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs
    stray = run / f".last.pt.{dead.pid}-abc123.tmp"
    stray.write_bytes(good[: len(good) // 2])  # half a checkpoint
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    busy = run / f".best.pt.{writer.pid}-0a1b2c.tmp"  # a process that still runs: its write may be in progress
    busy.write_bytes(b"in progress")
    other = run / ".notes.tmp"  # not the writer's name: not ours to delete
    other.write_bytes(b"")
    try:
        assert sorted(check_checkpoints(run)) == ["best.pt", "last.pt"]  # temp files are never taken for checkpoints
        assert ckpt.load_checkpoint(run / "last.pt")["epoch"] == 2
        with pytest.raises(CheckpointError, match="corrupt or truncated"):
            ckpt.load_checkpoint(stray)
        ckpt.save_checkpoint(ckpt.load_checkpoint(run), run / "last.pt")  # the next checkpoint write of a resumed run
        assert not stray.exists() and busy.exists() and other.exists()
    finally:
        writer.kill()
        writer.wait()


def _write_under_file_size_limit(target: Path, limit: int) -> subprocess.CompletedProcess:
    """`cnnx train --resume` in a process whose files may not grow past ``limit`` bytes:
    the kernel fails the checkpoint write with EFBIG, as a full disk fails it with ENOSPC."""
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG from write() instead of death by signal\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
        "from cnnx.cli import main\n"
        f"sys.exit(main(['train', '--resume', {str(target)!r}]))\n"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_full_disk_during_a_checkpoint_write_keeps_the_previous_one(tmp_path: Path) -> None:
    from cnnx.train.config import TrainConfig
    from cnnx.train.loop import Reporter, train

    class StopAfterFirstEpoch(Reporter):
        def epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
            if epoch == 2:
                raise KeyboardInterrupt

    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(
            TrainConfig(
                data_dir=str(MINI_MNIST),
                download=False,
                out=str(run),
                device="cpu",
                arch=ARCH,
                epochs=3,
                batch_size=64,
                plots=False,
                amp=False,  # float32 on every CPU, so epoch 2 beats epoch 1 (below) wherever the test runs
            ),
            StopAfterFirstEpoch(),
        )
    before = (run / "last.pt").read_bytes()
    assert ckpt.load_checkpoint(run / "last.pt")["epoch"] == 1
    proc = _write_under_file_size_limit(run, limit=len(before) // 2)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and proc.stderr.strip().splitlines()[-1] == errors[0], proc.stderr
    # epoch 2 is the best so far: best.pt is written first and is the write that fails (last.pt comes last)
    assert errors[0].startswith(f"error: could not write {run}/best.pt: the disk is full"), errors[0]
    assert "the previous best.pt is intact" in errors[0] and f"cnnx train --resume {run}" in errors[0]
    assert (run / "last.pt").read_bytes() == before and ckpt.load_checkpoint(run / "last.pt")["epoch"] == 1
    assert ckpt.load_checkpoint(run / "best.pt")["epoch"] == 1
    assert temp_files(run) == []
