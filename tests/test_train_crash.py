"""Crashes during training lose nothing: SIGKILL at random points (some inside a checkpoint write),
Ctrl-C, and a full disk, all on the real `cnnx train` in subprocesses.

The kill/resume procedure lives here, as plain functions, so that bench/kill_resume.py runs
exactly what the test runs and writes its figures (bench/results/kill_resume.json):

    python bench/kill_resume.py --kills 30

A run of ``seed000-net`` (dropout: the RNG state matters) on the shipped mini MNIST is killed
with SIGKILL again and again and resumed each time; after every kill every ``*.pt`` in the run
folder must load with cnnx's own loader, and at the end the weights must equal, tensor for
tensor, those of a run that was never interrupted (same seed, CPU, one thread).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from cnnx.errors import CheckpointError  # noqa: E402
from cnnx.train import checkpoint as ckpt  # noqa: E402
from tests.conftest import MINI_MNIST, REPO  # noqa: E402

ARCH = "seed000-net"  # 21,840 parameters with dropout: an epoch of the mini MNIST takes ~0.1 s


def train_args(out: Path, epochs: int, seed: int) -> list[str]:
    """`cnnx train` of a small, fast, reproducible run: CPU, one thread, no plots."""
    return ["train", "mnist", "--data-dir", str(MINI_MNIST), "--no-download", "--device", "cpu", "--threads", "1",
            "--arch", ARCH, "--epochs", str(epochs), "--batch-size", "64", "--seed", str(seed), "--no-plots",
            "--out", str(out)]


class Training:
    """One `python -m cnnx ...` process; a thread drains its stderr and notes when training starts."""

    def __init__(self, args: list[str]) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "cnnx", *args], cwd=REPO, env=env, text=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.lines: list[str] = []
        self.training = threading.Event()  # set at "training <arch> ...": data loaded, model built
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("training "):
                self.training.set()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 300) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)


def temp_files(run: Path) -> list[Path]:
    """The atomic writer's temp files (``.last.pt.PID-XXXX.tmp``): never a checkpoint."""
    return sorted(p for p in run.glob(".*.tmp")) if run.is_dir() else []


def check_checkpoints(run: Path) -> dict[str, int]:
    """Load every ``*.pt`` in ``run`` with cnnx's own loader; name -> epoch. Raises on any unloadable file."""
    epochs = {p.name: ckpt.load_checkpoint(p)["epoch"] for p in sorted(run.glob("*.pt"))}
    if (run / ckpt.LAST).is_file():
        assert ckpt.resolve_checkpoint(run) == run / ckpt.LAST  # the folder means last.pt, never a temp file
    return epochs


def start_or_resume(run: Path, epochs: int, seed: int) -> tuple[Training, bool]:
    """Resume ``run`` from its last.pt, or start it over when no epoch was saved yet; (process, resumed)."""
    if (run / ckpt.LAST).is_file():
        return Training(["train", "--resume", str(run)]), True
    return Training(train_args(run, epochs, seed)), False


def kill_in_write(job: Training, run: Path, nth: int, poll_s: float = 0.0002) -> bool:
    """SIGKILL ``job`` the moment the ``nth`` new checkpoint temp file appears; False if it never did."""
    seen: set[str] = {p.name for p in temp_files(run)}
    count = 0
    while job.alive():
        try:
            names = [e.name for e in os.scandir(run) if e.name.endswith(".tmp") and e.name not in seen]
        except FileNotFoundError:  # the run folder is made after start-up
            names = []
        if any(".pt." in n for n in names):
            count += 1
            if count >= nth:
                job.signal(signal.SIGKILL)
                return True
        seen.update(names)
        time.sleep(poll_s)
    return False


@dataclass
class KillResume:
    """What one kill/resume procedure did and found."""

    kills: int = 0  # SIGKILLs delivered to a live training process
    kills_in_write: int = 0  # of those, how many left a checkpoint temp file behind: died inside a write
    kills_aimed_at_writes: int = 0  # kills sent the moment a checkpoint temp file appeared
    kills_in_startup: int = 0  # kills before training started (imports, data loading)
    kills_before_first_checkpoint: int = 0  # kills that left no last.pt yet: the run starts over
    resumes: int = 0  # `cnnx train --resume` runs, the final one included
    restarts: int = 0  # runs started over from nothing because no epoch had been saved
    checkpoint_loads: int = 0  # *.pt files loaded after kills: every one loaded
    temp_files_seen: int = 0  # temp files found after kills (ignored by loading, swept by the next write)
    temp_files_left_at_end: int = 0
    epochs: int = 0
    epoch_at_each_kill: list[int] = field(default_factory=list)  # epochs in last.pt when each kill landed
    tensors_compared: int = 0
    tensors_different: list[str] = field(default_factory=list)
    identical: bool = False  # every tensor of the final weights equals the uninterrupted run's (torch.equal)
    metrics_identical: bool = False  # per-epoch losses and accuracies equal too
    seconds: float = 0.0

    def summary(self) -> str:
        return (f"{self.kills} kills ({self.kills_in_write} inside a checkpoint write, {self.kills_in_startup} "
                f"during start-up), {self.resumes} resumes, {self.restarts} restarts, {self.checkpoint_loads} "
                f"checkpoint loads after kills all good; final weights identical: {self.identical} "
                f"({self.tensors_compared} tensors), {self.seconds:.0f} s")


def reference_run(workdir: Path, epochs: int, seed: int) -> Path:
    """The uninterrupted run the killed one must match."""
    out = workdir / "uninterrupted"
    job = Training(train_args(out, epochs, seed))
    if job.wait() != 0:
        raise AssertionError(f"the uninterrupted run failed:\n{job.stderr}")
    return out


def same_weights(a_run: Path, b_run: Path, result: KillResume) -> None:
    a, b = ckpt.load_checkpoint(a_run), ckpt.load_checkpoint(b_run)
    result.tensors_compared = len(a["model"])
    result.tensors_different = [k for k in a["model"] if k not in b["model"] or not torch.equal(a["model"][k], b["model"][k])]
    result.identical = a["model"].keys() == b["model"].keys() and not result.tensors_different
    keys = ("epoch", "train_loss", "test_loss", "test_accuracy", "lr")
    result.metrics_identical = [[m[k] for k in keys] for m in a["metrics"]] == [[m[k] for k in keys] for m in b["metrics"]]


def kill_resume(workdir: Path, kills: int = 10, seed: int = 0, rng_seed: int = 0, epochs: int | None = None,
                reference: Path | None = None, log: Callable[[str], None] = lambda s: None) -> KillResume:
    """Kill a training run ``kills`` times with SIGKILL, resuming after each, then let it finish.

    Two in five kills are sent the moment a checkpoint temp file appears (the 1st to
    3rd one of that process's life: last.pt, best.pt); the rest at a random time, one in six
    of them during start-up and the others within the first six epochs after training
    starts (fewer near the end), so the run moves on between kills. Every choice comes from
    ``random.Random(rng_seed)``; only where a kill lands inside a step is left to the OS.
    """
    t0 = time.perf_counter()
    rng = random.Random(rng_seed)
    epochs = epochs or max(20, 2 * kills)  # enough that the killed run is still training at every kill
    result = KillResume(epochs=epochs)
    reference = reference or reference_run(workdir, epochs, seed)
    epoch_s = sum(m["epoch_seconds"] for m in ckpt.load_checkpoint(reference)["metrics"]) / epochs
    run = workdir / "killed"
    aimed = max(1, round(0.4 * kills))
    modes = ["write"] * aimed + ["random"] * (kills - aimed)
    rng.shuffle(modes)
    for i, mode in enumerate(modes):
        job, resumed = start_or_resume(run, epochs, seed)
        result.resumes += resumed
        result.restarts += (not resumed) and i > 0
        # bounded by the epochs left, so every kill lands while the run is still training
        left_epochs = epochs - (ckpt.load_checkpoint(run)["epoch"] if resumed else 0)
        if mode == "write":
            result.kills_aimed_at_writes += 1
            sent = kill_in_write(job, run, nth=min(rng.randint(1, 3), max(1, left_epochs - 1)))
        elif rng.random() < 1 / 6:
            time.sleep(rng.uniform(0.0, 1.0))  # imports, data loading, model building
            sent = job.alive()
            result.kills_in_startup += sent and not job.training.is_set()
            job.signal(signal.SIGKILL)
        else:
            job.training.wait(120)
            time.sleep(rng.uniform(0.0, min(6, 0.7 * left_epochs) * epoch_s))
            sent = job.alive()
            job.signal(signal.SIGKILL)
        code = job.wait()
        if not sent or code != -signal.SIGKILL:
            raise AssertionError(f"kill {i + 1} ({mode}) missed: the run ended by itself ({code}); "
                                 f"give it more epochs\n{job.stderr}")
        result.kills += 1
        left = temp_files(run)
        # the temp file names carry the writer's pid: one of this process's means it died inside that write
        died_writing = [p.name for p in left if f".{job.proc.pid}-" in p.name]
        result.kills_in_write += bool(died_writing)
        result.temp_files_seen += len(left)
        loaded = check_checkpoints(run)  # raises on any checkpoint that does not load
        result.checkpoint_loads += len(loaded)
        result.epoch_at_each_kill.append(loaded.get(ckpt.LAST, 0))
        result.kills_before_first_checkpoint += ckpt.LAST not in loaded
        log(f"kill {i + 1}/{kills} ({mode}): last.pt at epoch {loaded.get(ckpt.LAST, 0)}, {len(loaded)} "
            f"checkpoints load, {len(left)} temp files ({', '.join(died_writing) or 'none'} from this kill)")
    job, resumed = start_or_resume(run, epochs, seed)
    result.resumes += resumed
    if job.wait() != 0:
        raise AssertionError(f"the final resume failed:\n{job.stderr}")
    check_checkpoints(run)
    result.temp_files_left_at_end = len(temp_files(run))
    same_weights(reference, run, result)
    result.seconds = time.perf_counter() - t0
    return result


def as_dict(result: KillResume) -> dict:
    return asdict(result)


# ---------------------------------------------------------------- tests

EPOCHS, SEED = 20, 0


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return reference_run(tmp_path_factory.mktemp("reference"), EPOCHS, SEED)


def test_sigkill_at_random_points_then_resume_gives_identical_weights(tmp_path: Path, uninterrupted: Path) -> None:
    result = kill_resume(tmp_path, kills=10, seed=SEED, rng_seed=1, epochs=EPOCHS, reference=uninterrupted,
                         log=print)
    print(result.summary())
    assert result.kills == 10 and result.resumes >= 1
    assert result.kills_aimed_at_writes == 4
    assert result.kills_in_write >= 1, "no kill landed inside a checkpoint write"
    assert max(result.epoch_at_each_kill) > 0  # the kills did not all land before the first checkpoint
    assert result.temp_files_left_at_end == 0  # what killed writers left was swept by later writes
    assert result.identical, f"weights differ from the uninterrupted run: {result.tensors_different}"
    assert result.metrics_identical


def test_sigint_saves_whole_epochs_says_how_to_resume_and_resumes_identically(tmp_path: Path,
                                                                               uninterrupted: Path) -> None:
    run = tmp_path / "run"
    job = Training(train_args(run, EPOCHS, SEED))
    deadline = time.monotonic() + 120
    while job.alive() and not (run / ckpt.LAST).is_file() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.13)  # into a later epoch: mid-epoch, not at a boundary, most of the time
    job.signal(signal.SIGINT)
    assert job.wait() == 130, job.stderr
    saved = ckpt.load_checkpoint(run)["epoch"]
    assert 1 <= saved < EPOCHS
    last_line = job.lines[-1]
    assert "Traceback" not in job.stderr
    assert last_line == (f"interrupted during epoch {saved + 1} of {EPOCHS}; {run}/last.pt holds the {saved} "
                         f"finished epoch{'s' if saved != 1 else ''} (the unfinished one is redone): "
                         f"cnnx train --resume {run}")
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
        assert ckpt.load_checkpoint(run)["epoch"] == 2
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
        train(TrainConfig(data_dir=str(MINI_MNIST), download=False, out=str(run), device="cpu", arch=ARCH,
                          epochs=3, batch_size=64, plots=False), StopAfterFirstEpoch())
    before = (run / "last.pt").read_bytes()
    assert ckpt.load_checkpoint(run)["epoch"] == 1
    proc = _write_under_file_size_limit(run, limit=len(before) // 2)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and proc.stderr.strip().splitlines()[-1] == errors[0], proc.stderr
    # epoch 2 is the best so far: best.pt is written first and is the write that fails (last.pt comes last)
    assert errors[0].startswith(f"error: could not write {run}/best.pt: the disk is full"), errors[0]
    assert "the previous best.pt is intact" in errors[0] and f"cnnx train --resume {run}" in errors[0]
    assert (run / "last.pt").read_bytes() == before and ckpt.load_checkpoint(run)["epoch"] == 1
    assert ckpt.load_checkpoint(run / "best.pt")["epoch"] == 1
    assert temp_files(run) == []
