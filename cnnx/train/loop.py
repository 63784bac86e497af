"""The training entry point: ``train(config)``, from dataset to checkpoints.

It reads a checkpoint to resume from, settles the device (and, under torchrun, joins
the process group: ``cnnx.train.distributed``), names the run folder, and hands the
rest to a ``cnnx.train.run.Run``: set-up, the epoch loop, the files it writes.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch

from cnnx.core.contract import BEST, METRICS
from cnnx.core.errors import ConfigError
from cnnx.train import checkpoint as ckpt
from cnnx.train import distributed as ddp
from cnnx.train.config import TrainConfig
from cnnx.train.data import dataset_kind
from cnnx.train.models import get_arch
from cnnx.train.run import Reporter, Run, TrainResult, best_keys, new_run_dir

__all__ = ["Reporter", "TrainResult", "resolve_device", "train"]


def train(cfg: TrainConfig, reporter: Reporter | None = None, resume: Path | None = None) -> TrainResult:
    """Train (or resume) a run; write last.pt, best.pt and metrics.json into its folder."""
    t_start = time.perf_counter()
    world = ddp.world_from_env()
    reporter = reporter if reporter is not None and world.is_main else Reporter()
    state, run_dir = None, None
    if resume is not None:
        resume = ckpt.resolve_checkpoint(resume, resume=True)  # a run folder: its last.pt
        state = ckpt.load_checkpoint(resume)
        cfg, run_dir = _as_trained(TrainConfig.from_dict(state["config"]), state["spec"]), resume.parent
        nothing_left = finished_run(run_dir, state)
        if nothing_left is not None:  # said at once: no dataset read, no device set up, no file written
            return nothing_left
    if dataset_kind(cfg.dataset) == "folder":  # an absolute path, so --resume works from anywhere
        cfg = dataclasses.replace(cfg, dataset=str(Path(cfg.dataset).resolve()))
    if cfg.arch is not None:
        get_arch(cfg.arch)  # an unknown name is refused before any data is read
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    if cfg.amp is None:  # resolved once, so checkpoints say how the run trained and a resume trains alike
        cfg = dataclasses.replace(cfg, amp=bf16_is_fast(device))
    if world.enabled:
        device = ddp.init(world, device)  # on CUDA: this rank's own GPU
    finished = False
    try:
        if run_dir is None and cfg.out:
            run_dir = new_run_dir(cfg, world)  # an --out that holds a run is refused before any data is read
        run = Run(cfg, world, device, reporter, run_dir)
        if state is not None:
            run.restore(state)
        result = run.fit(t_start)
        finished = True
        return result
    finally:
        ddp.close(world, finished)


def finished_run(run_dir: Path, state: dict[str, Any]) -> TrainResult | None:
    """The result of resuming a run that has nothing left to do, from its files alone: ``state`` (the
    checkpoint resumed from) holds every epoch and the run's metrics.json was written after the last one.

    None when there is work: epochs to train, or a run stopped after its last checkpoint but before
    metrics.json and the plots were written (a resume writes them, which takes the data). The summary is
    metrics.json's, with ``epochs_trained`` 0, ``nothing_to_do`` true and ``reason`` saying why.
    """
    done, epochs = state["epoch"], state["config"]["epochs"]
    if done < epochs:
        return None
    try:
        summary = json.loads((run_dir / METRICS).read_text())
    except (OSError, ValueError):
        return None
    records = summary.get("epoch_metrics") if isinstance(summary, dict) else None
    last = json.loads(json.dumps(state["metrics"][-1], default=str))  # as metrics.json holds it
    if not isinstance(records, list) or len(records) != done or records[-1] != last:
        return None  # not written after this checkpoint's last epoch: another run's, or an earlier stop's
    best = next((m for m in records if m.get("epoch") == summary.get("best_epoch")), None)
    summary.update(
        # the folder as it is now (it may have moved since it was written)
        run_dir=str(run_dir),
        best_checkpoint=str(run_dir / BEST) if (run_dir / BEST).is_file() else None,
        **best_keys(best),  # a metrics.json from before these keys has them too
        epochs_trained=0,
        nothing_to_do=True,
        reason=f"{run_dir} finished its {done} epoch{'s' if done != 1 else ''}",
    )
    return TrainResult(run_dir, summary.get("best_accuracy"), summary["final_accuracy"], records, summary)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but torch sees no CUDA device", "use --device cpu or auto")
    return torch.device(name)


def bf16_is_fast(device: torch.device) -> bool:
    """Whether --amp's default is on: bf16 autocast where it was measured to train faster to the same
    held-out accuracy, a CPU with AMX tiles (the default preset in 0.58-0.64x the time, bench/train_speed.py).
    Off on other CPUs (without bf16 instructions it is emulated, and slower) and on CUDA: not measured."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private in torch 2.x: absent means no
    return device.type == "cpu" and probe is not None and bool(probe())


def _as_trained(cfg: TrainConfig, spec: dict[str, Any]) -> TrainConfig:
    """A checkpoint's config with the fields older cnnx versions left at None set as they trained:
    the spec's architecture, and for an image folder the spec's size and colour, and flips."""
    filled: dict[str, Any] = {"arch": spec["arch"]}
    if dataset_kind(cfg.dataset) == "folder":
        filled.update(image_size=spec["input_shape"][1], grayscale=spec["color"] == "L", flip=True)
    return dataclasses.replace(cfg, **{k: v for k, v in filled.items() if getattr(cfg, k) is None})
