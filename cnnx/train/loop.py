"""The training engine: one function, ``train(config)``, from dataset to checkpoints.

Data stays a uint8 tensor on the training device; each step gathers a batch,
shifts it at random, scales and normalises it (the pieces: ``cnnx.train.steps``). All randomness comes from
``torch``'s global generator (init, dropout) and one data generator (order,
augmentation), both saved in every checkpoint, so a run resumed at an epoch
boundary ends with the same weights as one that never stopped. Under torchrun the
same function runs in every process (``cnnx.train.distributed``); rank 0 writes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

import cnnx
from cnnx.core.contract import LAST
from cnnx.core.errors import ConfigError
from cnnx.core.fileio import atomic_write
from cnnx.core.spec import ModelSpec
from cnnx.train import checkpoint as ckpt
from cnnx.train import distributed as ddp
from cnnx.train.config import TrainConfig
from cnnx.train.data import Dataset, dataset_kind, default_arch, load_dataset
from cnnx.train.models import build_model, check_input, count_parameters, get_arch
from cnnx.train.runfiles import check_options, draw_plots, keep_files
from cnnx.train.steps import Normalizer, evaluate_shared, lr_factor, make_optimizer, random_flip, random_shift


class Reporter:
    """Receives progress; the CLI draws bars from it. Core code never prints."""

    def start(self, info: dict[str, Any]) -> None: ...
    def epoch_start(self, epoch: int, epochs: int, steps: int) -> None: ...
    def step(self, images: int, loss: float | None) -> None: ...
    def epoch_end(self, record: dict[str, Any]) -> None: ...


@dataclass
class TrainResult:
    run_dir: Path
    best_accuracy: float
    final_accuracy: float
    epochs: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


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


def _rng_state(gen: torch.Generator, device: torch.device, world: ddp.World) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "data": gen.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    if world.enabled:  # dropout draws differ per rank: keep every rank's generators
        state["ranks"] = ddp.gather(world, {k: v for k, v in state.items() if k != "data"})
    return state


def _restore_rng(state: dict[str, Any], gen: torch.Generator, device: torch.device, world: ddp.World) -> None:
    ranks = state.get("ranks")
    if world.enabled and ranks and len(ranks) == world.size:
        state = {**state, **ranks[world.rank]}
    torch.set_rng_state(state["torch"])
    gen.set_state(state["data"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def make_spec(cfg: TrainConfig, arch: str, data: Dataset) -> ModelSpec:
    return ModelSpec(
        arch=arch,
        input_shape=data.input_shape,
        color=data.color,
        mean=data.mean,
        std=data.std,
        classes=data.classes,
        preprocess=data.preprocess,
        dataset=data.name,
        versions={"cnnx": cnnx.__version__, "torch": str(torch.__version__)},
    )


def train(cfg: TrainConfig, reporter: Reporter | None = None, resume: Path | None = None) -> TrainResult:
    """Train (or resume) a run; write last.pt, best.pt and metrics.json into its folder."""
    world = ddp.world_from_env()
    reporter = reporter if reporter is not None and world.is_main else Reporter()
    state, run_dir = None, None
    if resume is not None:
        resume = ckpt.resolve_checkpoint(resume, resume=True)  # a run folder: its last.pt
        state = ckpt.load_checkpoint(resume)
        cfg = TrainConfig.from_dict(state["config"])
        run_dir = resume.parent
    t_start = time.perf_counter()
    if dataset_kind(cfg.dataset) == "folder":  # an absolute path, so --resume works from anywhere
        cfg = dataclasses.replace(cfg, dataset=str(Path(cfg.dataset).resolve()))
    check_options(cfg)
    arch = cfg.arch or default_arch(cfg.dataset)
    get_arch(arch)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    if world.enabled:
        device = ddp.init(world, device)  # on CUDA: this rank's own GPU
    finished = False
    try:
        result = _train(cfg, arch, state, run_dir, reporter, world, device, t_start)
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


def _train(
    cfg: TrainConfig,
    arch: str,
    state: dict[str, Any] | None,
    run_dir: Path | None,
    reporter: Reporter,
    world: ddp.World,
    device: torch.device,
    t_start: float,
) -> TrainResult:
    if run_dir is None:
        run_dir = _new_run_dir(cfg, arch, world)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)

    if not world.is_main:
        ddp.barrier(world)  # rank 0 downloads the dataset first, alone
    data = load_dataset(
        cfg.dataset,
        Path(cfg.data_dir) if cfg.data_dir else None,
        download=cfg.download,
        image_size=cfg.image_size,
        grayscale=cfg.grayscale,
        val_split=cfg.val_split,
        seed=cfg.seed,
        workers=cfg.workers,
    )
    if world.is_main:
        ddp.barrier(world)
    flip = data.hflip if cfg.flip is None else cfg.flip
    train_x, train_y = data.train.x.to(device), data.train.y.to(device)
    norm = Normalizer(data.mean, data.std, device)
    model = build_model(arch, len(data.classes), data.input_shape).to(device)
    check_input(model, arch, data.input_shape)
    memory_format = torch.channels_last  # ~2x faster convolutions on CPU, native on CUDA
    model = model.to(memory_format=memory_format)
    if world.enabled:
        torch.manual_seed(cfg.seed + 1000 * world.rank)  # same initial weights, but each rank its own dropout
    net = ddp.wrap(model, device) if world.enabled else model  # DDP averages gradients; `model` is what is saved
    optimizer = make_optimizer(model, cfg)
    steps_per_epoch = math.ceil(len(data.train) / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(cfg.schedule, s, total_steps, cfg.warmup)
    )
    spec = make_spec(cfg, arch, data)
    epochs_done, metrics, best = 0, [], -1.0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _restore_rng(state["rng"], gen, device, world)
        epochs_done, metrics, best = state["epoch"], list(state["metrics"]), state["best_accuracy"]
    reporter.start(
        {
            "run_dir": str(run_dir),
            "device": str(device),
            "arch": arch,
            "dataset": data.name,
            "parameters": count_parameters(model),
            "train_images": len(data.train),
            "test_images": len(data.test),
            "resumed_from_epoch": epochs_done,
            "processes": world.size,
            "skipped_images": data.skipped,
        }
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    loss_sum_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing, reduction="sum")
    tb = None
    if cfg.tensorboard and world.is_main:
        from cnnx.train.tblog import TensorBoardLog

        tb = TensorBoardLog(run_dir / "tensorboard", epochs_done)
        if not epochs_done:
            tb.images(data.train.x[:32], [data.classes[i] for i in data.train.y[:32].tolist()])
    pred = None  # test-set predictions of the latest epoch, for confusion.png

    for epoch in range(epochs_done + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        reporter.epoch_start(epoch, cfg.epochs, steps_per_epoch)
        order = torch.randperm(len(train_y), generator=gen).to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.int64)  # stays on the device: no sync per step
        for i in range(steps_per_epoch):
            idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]  # the global batch, the same on every rank
            part = world.part(len(idx))  # this rank's share of it
            x = train_x[idx[part]]
            if cfg.shift:
                x = random_shift(x, cfg.shift, gen, part, len(idx))
            if flip:
                x = random_flip(x, gen, part, len(idx))
            x = norm(x).contiguous(memory_format=memory_format)
            y = train_y[idx[part]]
            with torch.autocast(device.type, torch.bfloat16, enabled=cfg.amp):  # bf16: no loss scaling needed
                logits = net(x)
                if world.enabled:  # this rank's share of the global mean; DDP's gradient average undoes the
                    # factor. A sum, not a mean: a rank whose share is empty (a last batch smaller than
                    # the world) adds 0, where a mean would be NaN and spread to every rank
                    loss = loss_sum_fn(logits, y) * (world.size / len(idx))
                else:
                    loss = loss_fn(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.detach() * len(idx) / world.size
            correct += (logits.detach().argmax(1) == y).sum()
            # a .item() forces a device sync: only every 20 steps, and only where progress is drawn
            reporter.step(len(idx), loss.item() if i % 20 == 0 and world.is_main else None)
        train_time = time.perf_counter() - t0
        ddp.total(world, loss_sum)
        ddp.total(world, correct)
        ddp.check_in_step(world, model, epoch)
        test_loss, test_acc, pred = evaluate_shared(
            model, data.test, norm, cfg.eval_batch_size, device, memory_format, world
        )
        record = {
            "epoch": epoch,
            "train_loss": loss_sum.item() / len(train_y),
            "train_accuracy": correct.item() / len(train_y),  # in train mode, on augmented images
            "test_loss": test_loss,
            "test_accuracy": test_acc,
            "lr": optimizer.param_groups[0]["lr"],
            "train_seconds": train_time,
            "epoch_seconds": time.perf_counter() - t0,
            "images_per_second": len(train_y) / train_time,
        }
        metrics.append(record)
        is_best = test_acc > best
        best = max(best, test_acc)
        payload = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": _rng_state(gen, device, world),
            "epoch": epoch,
            "config": cfg.to_dict(),
            "metrics": metrics,
            "best_accuracy": best,
            "spec": spec.replace(test_accuracy=test_acc).to_dict(),
        }
        if world.is_main:
            # last.pt last: a resume starts from it, so a crash between the writes must not leave
            # a last.pt that counts this epoch as the best while best.pt still holds an older one
            for name in keep_files(cfg, epoch, test_acc, is_best):  # best.pt, epoch-NNN.pt
                ckpt.save_checkpoint(payload, run_dir / name)
            ckpt.save_checkpoint(payload, run_dir / LAST)
        if tb is not None:
            tb.epoch(record)
        reporter.epoch_end(record)

    if tb is not None:
        tb.close()
    plots: dict[str, str] = {}
    if cfg.plots and pred is None:  # resumed with no epoch left to train: predict once for the confusion matrix
        _, _, pred = evaluate_shared(model, data.test, norm, cfg.eval_batch_size, device, memory_format, world)
    if cfg.plots and world.is_main:
        plots = draw_plots(run_dir, metrics, data.test.y, pred, data.classes, f"{arch} on {data.name}")
    summary = {
        "run_dir": str(run_dir),
        "dataset": data.name,
        "arch": arch,
        "device": str(device),
        "parameters": count_parameters(model),
        "processes": world.size,
        "skipped_images": data.skipped,
        "epochs": cfg.epochs,
        "final_accuracy": metrics[-1]["test_accuracy"],
        "best_accuracy": best,
        "wall_seconds": time.perf_counter() - t_start,
        "config": cfg.to_dict(),
        "epoch_metrics": metrics,
        "versions": spec.versions,
        "plots": plots,
    }
    if world.is_main:
        atomic_write(run_dir / "metrics.json", lambda f: f.write(json.dumps(summary, indent=2).encode()), sweep=True)
    return TrainResult(run_dir, best, metrics[-1]["test_accuracy"], metrics, summary)
