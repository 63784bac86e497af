"""A training run as an object: set up (or restored), then its epoch loop, top to bottom.

``Run.fit`` is the whole story of an epoch: ``train_epoch`` (shuffled global batches,
each shifted, flipped and normalised on the device by ``cnnx.train.steps``),
``evaluate`` (``cnnx.train.evaluation``), ``save`` (best.pt and snapshots as the
options say, then last.pt) and ``log``; ``finish`` draws the pictures and writes
metrics.json. All randomness comes from ``torch``'s global generator (init, dropout)
and the run's data generator (order, augmentation), both saved in every checkpoint,
so a run resumed at an epoch boundary ends with the same weights as one that never
stopped. Every rank of a distributed run holds a ``Run``; rank 0 alone writes.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cnnx.core.contract import BEST, LAST, METRICS, TENSORBOARD
from cnnx.core.errors import ConfigError
from cnnx.core.fileio import atomic_write, folder_problem
from cnnx.train import checkpoint as ckpt
from cnnx.train import distributed as ddp
from cnnx.train import rng
from cnnx.train.config import TrainConfig
from cnnx.train.data import Dataset, default_data_dir, load_dataset, settled
from cnnx.train.evaluation import evaluate_shared
from cnnx.train.honesty import (
    Photographed,
    energy_loss,
    fit_honesty,
    held_out_logits,
    hold_out,
    uniform_loss,
)
from cnnx.train.models import build_model, check_input, count_parameters
from cnnx.train.pictures import draw_pictures
from cnnx.train.steps import Normalizer, lr_factor, make_optimizer, random_distort, random_flip, random_shift

# ~2x faster convolutions on the CPU, native on CUDA; checkpoints hold the same state_dict either way
MEMORY_FORMAT = torch.channels_last


class Reporter:
    """Receives progress; the CLI draws bars from it. Core code never prints."""

    def task(self, text: str, total: int) -> Callable[[], None]:
        """A long job before the first epoch (``total`` units): returns the call made per unit done."""
        return lambda: None

    def start(self, info: dict[str, Any]) -> None: ...
    def epoch_start(self, epoch: int, epochs: int, steps: int) -> None: ...
    def step(self, images: int, loss: float | None) -> None: ...
    def epoch_end(self, record: dict[str, Any]) -> None: ...


@dataclass
class TrainResult:
    run_dir: Path
    best_accuracy: float | None  # test accuracy of the epoch in best.pt; None: no epoch reached --save-min-acc
    final_accuracy: float
    epochs: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def best_keys(best: dict[str, Any] | None) -> dict[str, float | None]:
    """best.pt's accuracies under names that say which images they were measured on, from its epoch's
    record (None: no best.pt): ``best_test_accuracy``, on the test split, the figure to report;
    ``best_holdout_accuracy``, on the held-out images that chose it (None when none were held out);
    and ``best_accuracy``, the test accuracy again under the name earlier versions gave it."""
    test = None if best is None else best["test_accuracy"]
    held = None if best is None else best.get("holdout_accuracy")
    return {"best_accuracy": test, "best_test_accuracy": test, "best_holdout_accuracy": held}


def new_run_dir(cfg: TrainConfig, world: ddp.World) -> Path:
    """``--out``, or artifacts/runs/<dataset>-<arch>-<time>; rank 0 names it (its clock picks the time)
    and every rank uses that name. Refused when it already holds a run."""
    decided = None
    if world.is_main:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = (
            Path(cfg.out) if cfg.out else Path("artifacts", "runs", f"{Path(cfg.dataset).name}-{cfg.arch}-{stamp}")
        )
        taken = (run_dir / LAST).exists()
        decided = (run_dir, taken, None if taken else folder_problem(run_dir))
    run_dir, taken, unusable = ddp.share(world, decided)
    if taken:
        raise ConfigError(f"{run_dir} already holds a run", f"resume it with --resume {run_dir}, or pick another --out")
    if unusable:
        raise ConfigError(f"cannot write the run folder {run_dir}: {unusable}", "pick another --out")
    return run_dir


class Run:
    """One training run: its data on the device, model, optimiser, schedule and random state.

    Every rank of a distributed run holds one; rank 0 alone writes the run folder.
    """

    def __init__(
        self, cfg: TrainConfig, world: ddp.World, device: torch.device, reporter: Reporter, run_dir: Path | None
    ) -> None:
        """Set up the run; ``run_dir`` None: a new time-stamped folder named once the data settled the arch."""
        self.cfg, self.world, self.device, self.reporter = cfg, world, device, reporter
        torch.manual_seed(cfg.seed)  # model init, dropout
        self.gen = torch.Generator().manual_seed(cfg.seed)  # data order, augmentation
        self.data = self._load_data()
        self.cfg = cfg = settled(cfg, self.data)  # arch, batch size, flips, folder size and colour
        assert cfg.arch is not None and cfg.batch_size is not None and cfg.lr is not None and cfg.flip is not None
        self.arch, self.flip = cfg.arch, cfg.flip
        self.run_dir = run_dir or new_run_dir(cfg, world)
        trains, self.held = hold_out(self.data.train, cfg.holdout, cfg.seed)  # held: calibration and refusal
        # best.pt is chosen on the held-out images, so the test split stays a result; none held out: on the test
        self.chosen_by = "holdout_accuracy" if self.held is not None else "test_accuracy"
        self.train_x, self.train_y = trains.x.to(device), trains.y.to(device)  # uint8, int64
        self.norm = Normalizer(self.data.mean, self.data.std, device)
        self.model = build_model(cfg.arch, len(self.data.classes), self.data.input_shape).to(device)
        check_input(self.model, cfg.arch, self.data.input_shape)
        self.model = self.model.to(memory_format=MEMORY_FORMAT)
        if world.enabled:
            torch.manual_seed(cfg.seed + 1000 * world.rank)  # same initial weights, but each rank its own dropout
        # DDP averages gradients; `model` is what is saved
        self.net = ddp.wrap(self.model, device) if world.enabled else self.model
        self.optimizer = make_optimizer(self.model, cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)
        self.batch = cfg.batch_size
        self.steps_per_epoch = math.ceil(len(self.train_y) / self.batch)
        total = cfg.epochs * self.steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(cfg.schedule, s, total, cfg.warmup)
        )
        self.spec = self.data.model_spec(cfg.arch)
        self.photos = None  # photographed digits and non-digits, for --outliers
        if cfg.outliers:
            # made once and kept with the downloaded datasets (never in a --data-dir, which may be read-only)
            banks = default_data_dir() / "cnnx-banks"
            self.photos = Photographed(self.spec, self.data.train, cfg.holdout, cfg.seed, banks, device, reporter.task)
        self.epochs_done = 0
        self.metrics: list[dict[str, Any]] = []  # one record per epoch done, resumed ones included
        self.pred: torch.Tensor | None = None  # the latest epoch's (N,) test predictions, for confusion.png
        self.tb: Any = None  # a TensorBoardLog with --tensorboard, on rank 0
        self.honesty: dict[str, Any] = {}  # the spec's calibration and openset as of the latest epoch

    def _load_data(self) -> Dataset:
        cfg, world = self.cfg, self.world
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
        return data

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint: weights, optimiser, schedule, every generator, the epochs done."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        rng.restore(state["rng"], self.gen, self.device, self.world)
        self.epochs_done, self.metrics = state["epoch"], list(state["metrics"])

    def fit(self, t_start: float) -> TrainResult:
        """The epochs not yet done, each trained, evaluated, saved and logged; then the run's summary."""
        self.reporter.start(self.info())
        if self.cfg.tensorboard and self.world.is_main:
            from cnnx.train.tblog import TensorBoardLog

            self.tb = TensorBoardLog.for_run(self.run_dir / TENSORBOARD, self.epochs_done, self.data)
        for epoch in range(self.epochs_done + 1, self.cfg.epochs + 1):
            t0 = time.perf_counter()
            self.reporter.epoch_start(epoch, self.cfg.epochs, self.steps_per_epoch)
            trained = self.train_epoch(epoch)
            test_loss, test_accuracy = self.evaluate()
            self.honesty, held = self.fit_honesty()
            record = {
                "epoch": epoch,
                "train_loss": trained["loss"],
                "train_accuracy": trained["accuracy"],  # in train mode, on augmented images
                "test_loss": test_loss,
                "test_accuracy": test_accuracy,
                "lr": self.optimizer.param_groups[0]["lr"],
                "train_seconds": trained["seconds"],
                "epoch_seconds": time.perf_counter() - t0,
                "images_per_second": len(self.train_y) / trained["seconds"],
                **held,
            }
            self.save(record)
            self.log(record)
        return self.finish(t_start)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training split in shuffled global batches: mean loss, accuracy, seconds."""
        batch, world = self.batch, self.world
        t0 = time.perf_counter()
        self.model.train()
        order = torch.randperm(len(self.train_y), generator=self.gen).to(self.device)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.int64)  # stays on the device: no sync per step
        for i in range(self.steps_per_epoch):
            idx = order[i * batch : (i + 1) * batch]  # the global batch, the same on every rank
            loss, hits = self.step(idx)
            loss_sum += loss.detach() * len(idx) / world.size
            correct += hits
            # a .item() forces a device sync: only every 20 steps, and only where progress is drawn
            self.reporter.step(len(idx), loss.item() if i % 20 == 0 and world.is_main else None)
        seconds = time.perf_counter() - t0
        ddp.total(world, loss_sum)
        ddp.total(world, correct)
        ddp.check_in_step(world, self.model, epoch)
        n = len(self.train_y)
        return {"loss": loss_sum.item() / n, "accuracy": correct.item() / n, "seconds": seconds}

    def assemble(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """This rank's share of the global batch ``idx``, augmented and normalised: (x, labels of the
        first ``len(labels)`` rows, how many of those are training images). With outlier exposure
        photographed digits and photographed non-digits follow (``Photographed.counts``)."""
        cfg, world = self.cfg, self.world
        part = world.part(len(idx))  # this rank's share of the batch
        x = self.train_x[idx[part]]  # (n, C, H, W) uint8
        if cfg.shift:
            x = random_shift(x, cfg.shift, self.gen, part, len(idx))
        if self.flip:
            x = random_flip(x, self.gen, part, len(idx))
        if cfg.distort:
            x = random_distort(x, cfg.distort, self.gen, part, len(idx))
        y = self.train_y[idx[part]]
        own = len(y)
        if self.photos is not None:
            d, o = self.photos.counts(len(idx))
            digits, labels = self.photos.digits(self.gen, world.part(d), d)
            x, y = torch.cat([x, digits]), torch.cat([y, labels])
            x = torch.cat([x, self.photos.others(self.gen, world.part(o), o)])
        return self.norm(x).contiguous(memory_format=MEMORY_FORMAT), y, own

    def step(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step on the global batch ``idx``, of which this rank trains on its share:
        this rank's loss and its number of correct predictions on training images (tensors, on the device)."""
        cfg, world = self.cfg, self.world
        x, y, own = self.assemble(idx)
        labelled = len(idx) + (self.photos.counts(len(idx))[0] if self.photos is not None else 0)  # global rows
        with torch.autocast(self.device.type, torch.bfloat16, enabled=bool(cfg.amp)):  # bf16: no loss scaling needed
            logits, others = self.net(x).split([len(y), len(x) - len(y)])
            if world.enabled:  # this rank's share of the global mean; DDP's gradient average undoes the
                # factor. A sum, not a mean: a rank whose share is empty (a last batch smaller than
                # the world) adds 0, where a mean would be NaN and spread to every rank
                loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing, reduction="sum")
                loss = loss * (world.size / labelled)
            else:
                loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            if len(others) and cfg.outliers:  # outlier exposure: what is no class scores low (or answers flat)
                total = self.photos.counts(len(idx))[1] / world.size if world.enabled and self.photos else None
                if cfg.outlier_loss == "energy":
                    rows = labelled / world.size if world.enabled else None
                    loss = loss + cfg.outliers * energy_loss(logits, others, rows, total)
                else:
                    loss = loss + cfg.outliers * uniform_loss(others, total)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return loss, (logits[:own].detach().argmax(1) == y[:own]).sum()

    def evaluate(self) -> tuple[float, float]:
        """Test loss and accuracy of the model as it is now; keeps the predictions for confusion.png."""
        loss, accuracy, self.pred = evaluate_shared(
            self.model, self.data.test, self.norm, self.cfg.eval_batch_size, self.device, MEMORY_FORMAT, self.world
        )
        return loss, accuracy

    def fit_honesty(self) -> tuple[dict[str, Any], dict[str, float]]:
        """The spec's calibration and refusal threshold, fitted on the held-out images, and the epoch's
        figures on them (``holdout_loss``, before calibration, and ``holdout_accuracy``): the numbers to
        choose options by, leaving the test split for reporting. None held out: neither."""
        if self.held is None:
            return {}, {}
        logits = held_out_logits(self.model, self.held, self.norm, self.cfg.eval_batch_size, MEMORY_FORMAT)
        labels = self.held.y.numpy()
        what = f"{len(self.held):,} {self.data.name} training images held out of training"
        fields = fit_honesty(logits, labels, self.cfg.refuse, what, self.cfg.refusal_score)
        figures = {
            "holdout_loss": fields["calibration"]["nll_before"],
            "holdout_accuracy": float((logits.argmax(1) == labels).mean()),
        }
        return fields, figures

    def best_epoch(self) -> dict[str, Any] | None:
        """The record of the epoch best.pt holds: the highest ``chosen_by`` accuracy at --save-min-acc or
        above, the earliest on a tie; None while no epoch reached it."""
        kept = [m for m in self.metrics if m.get(self.chosen_by, -1.0) >= self.cfg.save_min_acc]
        return max(kept, key=lambda m: m[self.chosen_by], default=None)

    def save(self, record: dict[str, Any]) -> None:
        """Checkpoint the epoch: best.pt and epoch-NNN.pt as --save-min-acc and --save-every say, then last.pt."""
        self.metrics.append(record)
        accuracy = record["test_accuracy"]
        best = self.best_epoch()
        payload = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng.capture(self.gen, self.device, self.world),  # every rank takes part: it gathers
            "epoch": record["epoch"],
            "config": self.cfg.to_dict(),
            "metrics": self.metrics,
            "best_accuracy": None if best is None else best["test_accuracy"],  # best.pt's, on the test split
            "spec": self.spec.replace(test_accuracy=accuracy, **self.honesty).to_dict(),
        }
        if self.world.is_main:
            # last.pt last: a resume starts from it, so a crash between the writes must not leave
            # a last.pt that counts this epoch as the best while best.pt still holds an older one
            for name in ckpt.keep_files(self.cfg, record["epoch"], record[self.chosen_by], best is record):
                ckpt.save_checkpoint(payload, self.run_dir / name)
            ckpt.save_checkpoint(payload, self.run_dir / LAST)

    def log(self, record: dict[str, Any]) -> None:
        if self.tb is not None:
            self.tb.epoch(record)
        self.reporter.epoch_end(record)

    def finish(self, t_start: float) -> TrainResult:
        """The pictures and metrics.json (rank 0), and the result every rank returns."""
        cfg, world = self.cfg, self.world
        if self.tb is not None:
            self.tb.close()
        plots: dict[str, str] = {}
        if cfg.plots and self.pred is None:  # resumed with no epoch left to train: predict once for the matrix
            self.evaluate()
        if cfg.plots and world.is_main and self.pred is not None:
            title = f"{self.arch} on {self.data.name}"
            plots = draw_pictures(self.run_dir, self.metrics, self.data.test.y, self.pred, self.data.classes, title)
        final = self.metrics[-1]["test_accuracy"]
        best = self.best_epoch()
        summary = {
            **{k: v for k, v in self.info().items() if k not in _START_ONLY},
            "epochs": cfg.epochs,
            "epochs_trained": max(cfg.epochs - self.epochs_done, 0),  # 0: resumed a finished run
            "final_accuracy": final,
            # best.pt's epoch and accuracies, chosen by "holdout_accuracy" (or "test_accuracy" when
            # nothing is held out); None when no epoch reached --save-min-acc: last.pt is the only checkpoint
            "chosen_by": self.chosen_by,
            "best_epoch": None if best is None else best["epoch"],
            **best_keys(best),
            "best_checkpoint": str(self.run_dir / BEST) if (self.run_dir / BEST).is_file() else None,
            "wall_seconds": time.perf_counter() - t_start,
            "config": cfg.to_dict(),
            "epoch_metrics": self.metrics,
            "versions": self.spec.versions,
            "plots": plots,
        }
        if world.is_main:
            atomic_write(self.run_dir / METRICS, lambda f: f.write(json.dumps(summary, indent=2).encode()), sweep=True)
        return TrainResult(self.run_dir, summary["best_accuracy"], final, self.metrics, summary)

    def info(self) -> dict[str, Any]:
        """What the run is, for the reporter's first line and the summary."""
        return {
            "run_dir": str(self.run_dir),
            "dataset": self.data.name,
            "arch": self.arch,
            "device": str(self.device),
            "precision": "bfloat16 autocast" if self.cfg.amp else "float32",  # --amp, as resolved for this device
            # torch's CPU threads: a sum split over another number of threads rounds otherwise, so a run
            # repeats bit for bit with the same seed and the same threads (--threads 0: torch's default)
            "cpu_threads": torch.get_num_threads(),
            "parameters": count_parameters(self.model),
            "train_images": len(self.train_y),
            "held_out_images": len(self.held) if self.held is not None else 0,
            "test_images": len(self.data.test),
            "resumed_from_epoch": self.epochs_done,
            "processes": self.world.size,
            "skipped_images": self.data.skipped,
        }


_START_ONLY = ("train_images", "test_images", "resumed_from_epoch")  # in the first line, not in metrics.json
