"""The kill/resume procedure: a `cnnx train` run killed with SIGKILL again and again, resumed each time.

Plain functions, so that tests/train/test_crash.py and bench/kill_resume.py run exactly the
same procedure (the bench writes bench/results/kill_resume.json):

    python bench/kill_resume.py --kills 30

A run of ``seed000-net`` (dropout: the RNG state matters) on the shipped mini MNIST is killed
with SIGKILL again and again and resumed each time; after every kill every ``*.pt`` in the run
folder must load with cnnx's own loader, and at the end the weights must equal, tensor for
tensor, those of a run that was never interrupted (same seed, CPU, one thread). Needs torch.
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

import torch

from cnnx.train import checkpoint as ckpt

MINI_MNIST = Path(__file__).resolve().parent.parent / "samples" / "mnist"  # 1,000 + 500 real digits
ROOT = Path(__file__).resolve().parents[2]  # the folder holding the cnnx package: `python -m cnnx` runs this copy

ARCH = "seed000-net"  # 21,840 parameters with dropout: an epoch of the mini MNIST takes ~0.1 s


def train_args(out: Path, epochs: int, seed: int) -> list[str]:
    """`cnnx train` of a small, fast, reproducible run: CPU, one thread, no plots."""
    return [
        "train",
        "mnist",
        "--data-dir",
        str(MINI_MNIST),
        "--no-download",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--arch",
        ARCH,
        "--epochs",
        str(epochs),
        "--batch-size",
        "64",
        "--seed",
        str(seed),
        "--no-plots",
        "--out",
        str(out),
    ]


def _ctrl_c_reaches_python() -> None:
    """In the child before exec: SIGINT back to its default. A parent started in the background by a
    shell ignores SIGINT, its children inherit that, and Python then installs no KeyboardInterrupt
    handler: Ctrl-C (the SIGINT the tests send) would never reach the training loop."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Training:
    """One `python -m cnnx ...` process; a thread drains its stderr and notes when training starts."""

    def __init__(self, args: list[str]) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cnnx", *args],
            cwd=ROOT,
            env=env,
            text=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=_ctrl_c_reaches_python,
        )
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
        assert (
            ckpt.resolve_checkpoint(run, resume=True) == run / "last.pt"
        )  # the folder means last.pt, never a temp file
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
        return (
            f"{self.kills} kills ({self.kills_in_write} inside a checkpoint write, {self.kills_in_startup} "
            f"during start-up), {self.resumes} resumes, {self.restarts} restarts, {self.checkpoint_loads} "
            f"checkpoint loads after kills all good; final weights identical: {self.identical} "
            f"({self.tensors_compared} tensors), {self.seconds:.0f} s"
        )


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
    result.tensors_different = [
        k for k in a["model"] if k not in b["model"] or not torch.equal(a["model"][k], b["model"][k])
    ]
    result.identical = a["model"].keys() == b["model"].keys() and not result.tensors_different
    keys = ("epoch", "train_loss", "test_loss", "test_accuracy", "lr")
    result.metrics_identical = [[m[k] for k in keys] for m in a["metrics"]] == [
        [m[k] for k in keys] for m in b["metrics"]
    ]


def kill_resume(
    workdir: Path,
    kills: int = 10,
    seed: int = 0,
    rng_seed: int = 0,
    epochs: int | None = None,
    reference: Path | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> KillResume:
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
        left_epochs = epochs - (ckpt.load_checkpoint(run / "last.pt")["epoch"] if resumed else 0)
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
            raise AssertionError(
                f"kill {i + 1} ({mode}) missed: the run ended by itself ({code}); give it more epochs\n{job.stderr}"
            )
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
        log(
            f"kill {i + 1}/{kills} ({mode}): last.pt at epoch {loaded.get(ckpt.LAST, 0)}, {len(loaded)} "
            f"checkpoints load, {len(left)} temp files ({', '.join(died_writing) or 'none'} from this kill)"
        )
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
