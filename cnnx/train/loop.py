"""The training entry point: ``train(config)``, from dataset to checkpoints.

It reads a checkpoint to resume from, settles the device (and, under torchrun, joins
the process group: ``cnnx.train.distributed``), names the run folder, and hands the
rest to a ``cnnx.train.run.Run``: set-up, the epoch loop, the files it writes.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime
from pathlib import Path

import torch

from cnnx.core.contract import LAST
from cnnx.core.errors import ConfigError
from cnnx.train import checkpoint as ckpt
from cnnx.train import distributed as ddp
from cnnx.train.config import TrainConfig
from cnnx.train.data import dataset_kind, default_arch
from cnnx.train.models import get_arch
from cnnx.train.run import Reporter, Run, TrainResult, make_spec

__all__ = ["Reporter", "TrainResult", "make_spec", "resolve_device", "train"]


def train(cfg: TrainConfig, reporter: Reporter | None = None, resume: Path | None = None) -> TrainResult:
    """Train (or resume) a run; write last.pt, best.pt and metrics.json into its folder."""
    t_start = time.perf_counter()
    world = ddp.world_from_env()
    reporter = reporter if reporter is not None and world.is_main else Reporter()
    state, run_dir = None, None
    if resume is not None:
        resume = ckpt.resolve_checkpoint(resume, resume=True)  # a run folder: its last.pt
        state = ckpt.load_checkpoint(resume)
        cfg, run_dir = TrainConfig.from_dict(state["config"]), resume.parent
    if dataset_kind(cfg.dataset) == "folder":  # an absolute path, so --resume works from anywhere
        cfg = dataclasses.replace(cfg, dataset=str(Path(cfg.dataset).resolve()))
    arch = cfg.arch or default_arch(cfg.dataset)
    get_arch(arch)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    if world.enabled:
        device = ddp.init(world, device)  # on CUDA: this rank's own GPU
    finished = False
    try:
        run = Run(cfg, arch, world, device, reporter, run_dir or _new_run_dir(cfg, arch, world))
        if state is not None:
            run.restore(state)
        result = run.fit(t_start)
        finished = True
        return result
    finally:
        ddp.close(world, finished)


def _new_run_dir(cfg: TrainConfig, arch: str, world: ddp.World) -> Path:
    """Rank 0 names the run folder (its clock picks the time stamp) and every rank uses that name."""
    decided = None
    if world.is_main:
        run_dir = _run_dir(cfg, arch)
        decided = (run_dir, (run_dir / LAST).exists())
    run_dir, taken = ddp.share(world, decided)
    if taken:
        raise ConfigError(f"{run_dir} already holds a run", f"resume it with --resume {run_dir}, or pick another --out")
    return run_dir


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but torch sees no CUDA device", "use --device cpu or auto")
    return torch.device(name)


def _run_dir(cfg: TrainConfig, arch: str) -> Path:
    if cfg.out:
        return Path(cfg.out)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("artifacts") / "runs" / f"{Path(cfg.dataset).name}-{arch}-{stamp}"
