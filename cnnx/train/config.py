"""Training configuration: one dataclass, one field per CLI option, saved in every checkpoint.

Standard library only: the CLI builds its --help (choices, defaults, presets) from this module
without importing torch.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnx.core.errors import ConfigError
from cnnx.core.spec import OPENSET_METHODS

ENV_DATA_DIR = "CNNX_DATA_DIR"


def default_data_dir() -> Path:
    """Where datasets are looked for (and downloaded to) when --data-dir is not given."""
    env = os.environ.get(ENV_DATA_DIR)
    return Path(env) if env else Path.home() / ".cache" / "cnnx" / "data"


OPTIMIZERS = ("sgd", "adam", "adamw")
OUTLIER_LOSSES = ("energy", "uniform")
SCHEDULES = ("onecycle", "cosine", "constant")
DEVICES = ("auto", "cpu", "cuda")

# What a field left at None becomes once the data is loaded (cnnx.train.data.settled).
BATCH, LR = 256, 0.02  # images per step, peak learning rate: the MNIST recipe (bench/train_speed.py)
# An image folder's batch is halved until an epoch has MIN_STEPS steps, and its learning rate scaled
# with it (LR * batch / BATCH, the linear scaling rule). A few large steps an epoch leave BatchNorm's
# running statistics behind the weights: 1,918 digits at 256 a step were at 33% after epoch 1, at 32
# a step 88%, and 93.6% with the scaled rate (test loss 0.25; bench/folder_defaults.py)
MIN_STEPS, MIN_BATCH = 50, 32  # smaller batches cost a CPU more time per image
# An image folder trains at its images' median shorter side within these bounds: the networks need 8
# pixels, and on 40-160 pixel photos 64 instead of 32 took 7x longer for 73.5% instead of 97.5%
MIN_SIZE, MAX_SIZE = 8, 32


def folder_lr(batch: int) -> float:
    """An image folder's learning rate for ``batch`` images a step: LR * batch / BATCH."""
    return LR * batch / BATCH


def folder_batch(train_images: int) -> int:
    """The largest power of two up to BATCH that makes at least MIN_STEPS steps of an epoch (MIN_BATCH at least)."""
    batch = BATCH
    while batch > MIN_BATCH and train_images < MIN_STEPS * batch:
        batch //= 2
    return batch


@dataclass
class TrainConfig:
    dataset: str = "mnist"  # dataset name (cnnx.train.data.REGISTRY) or a folder of class sub-folders
    arch: str | None = None  # registry name; None = the dataset's default (a folder: by its images' shape)
    epochs: int = 3  # passes over the training split
    batch_size: int | None = None  # images per optimiser step; None = BATCH, less for a small image folder
    lr: float | None = None  # peak (one-cycle) or initial (cosine, constant) learning rate; None = LR, see folder_lr
    optimizer: str = "adamw"  # sgd (Nesterov momentum), adam or adamw
    momentum: float = 0.9  # SGD momentum, Adam beta1
    weight_decay: float = 5e-4  # decoupled for AdamW, L2 for SGD and Adam
    schedule: str = "onecycle"  # onecycle: warm up then anneal; cosine: anneal only; constant
    warmup: float = 0.2  # fraction of all steps spent warming up (one-cycle)
    label_smoothing: float = 0.0  # CrossEntropyLoss label smoothing
    shift: int = 2  # random translation augmentation, in pixels each way (0 = off)
    distort: float = 0.0  # strength of the handwriting augmentation (affine, elastic, stroke, blur); 0 = off
    seed: int = 0  # seeds model init, data order, augmentation and dropout
    device: str = "auto"  # auto (CUDA when present), cpu or cuda
    threads: int = 0  # torch intra-op CPU threads; 0 = torch's default
    workers: int = 0  # DataLoader worker processes for datasets decoded from files
    data_dir: str | None = None  # dataset folder; None = $CNNX_DATA_DIR or ~/.cache/cnnx/data
    download: bool = True  # download the dataset when it is not in data_dir
    out: str | None = None  # run folder; None = artifacts/runs/<dataset>-<arch>-<time>
    eval_batch_size: int = 512  # images per forward pass when evaluating; 0.75-0.8x the CPU time of 1000, same logits
    image_size: int | None = None  # image folders: side in pixels images are resized to; None = the images' own
    grayscale: bool | None = None  # image folders: 1-channel (L) or RGB images; None = L when they hold no colour
    val_split: float = 0.2  # image folders without train/ and test/: fraction of each class held out for testing
    flip: bool | None = None  # random horizontal flips; None = the dataset's (CIFAR-10 yes; digits, folders no)
    save_every: int = 0  # also keep epoch-NNN.pt every N epochs (0 = only last.pt and best.pt)
    save_min_acc: float = 0.0  # write best.pt and epoch-NNN.pt only from this accuracy up (best.pt's measure)
    tensorboard: bool = False  # write TensorBoard scalars and sample images to <run folder>/tensorboard
    plots: bool = True  # draw curves.png and confusion.png into the run folder at the end
    holdout: float = 0.08  # fraction of the training split held out to fit calibration and refusal (0 = neither)
    outliers: float | None = None  # weight of the outlier loss; None = OUTLIER_WEIGHTS[outlier_loss] for digits, else 0
    # how generated non-digits train: "energy" (squared hinges on the refusal score of digits and of
    # non-digits) or "uniform" (cross-entropy to a flat output); cnnx.train.honesty
    outlier_loss: str = "energy"
    refuse: float = 0.005  # fraction of held-out real images the refusal threshold may refuse (0 = never refuse)
    refusal_score: str = "energy"  # how the refusal scores an input: energy or msp (cnnx.core.calibration.scores)
    # bfloat16 autocast of the training forward pass; weights, optimiser and checkpoints stay float32.
    # None = on where it was measured to train faster to the same accuracy (a CPU with AMX), else off
    amp: bool | None = None

    def __post_init__(self) -> None:
        """Every field checked here, once, before any data is loaded: the CLI, resumed checkpoints and
        library callers all build a TrainConfig, so none of them needs checks of its own."""
        for ok, message, hint in self._checks():
            if not ok:
                raise ConfigError(message, hint)
        if self.tensorboard and importlib.util.find_spec("tensorboard") is None:
            raise ConfigError(
                "--tensorboard needs the tensorboard package, which is not installed",
                "pip install tensorboard, or train without --tensorboard",
            )

    def _checks(self) -> list[tuple[bool, str, str | None]]:
        """(holds?, message naming the bad value, the way out or None), one per rule."""
        return [
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}", None),
            (
                self.batch_size is None or self.batch_size >= 1,
                f"--batch-size must be at least 1, got {self.batch_size}",
                None,
            ),
            (self.eval_batch_size >= 1, f"eval_batch_size must be at least 1, got {self.eval_batch_size}", None),
            (self.lr is None or self.lr > 0, f"--lr must be positive, got {self.lr}", None),
            (self.optimizer in OPTIMIZERS, f"--optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}", None),
            (self.schedule in SCHEDULES, f"--schedule must be one of {SCHEDULES}, got {self.schedule!r}", None),
            (self.device in DEVICES, f"--device must be one of {DEVICES}, got {self.device!r}", None),
            (0 <= self.momentum < 1, f"--momentum must be in [0, 1), got {self.momentum}", None),
            (self.weight_decay >= 0, f"--weight-decay must be 0 or more, got {self.weight_decay}", None),
            (0 <= self.warmup < 1, f"--warmup must be in [0, 1), got {self.warmup}", None),
            (
                0 <= self.label_smoothing < 1,
                f"--label-smoothing must be in [0, 1), got {self.label_smoothing}",
                None,
            ),
            (self.shift >= 0, f"--shift must be 0 or more, got {self.shift}", None),
            (0 <= self.distort <= 2, f"--distort must be in [0, 2], got {self.distort}", "1 is the measured recipe"),
            (self.threads >= 0 and self.workers >= 0, "--threads and --workers must be 0 or more", None),
            (
                self.image_size is None or self.image_size >= MIN_SIZE,
                f"--image-size must be at least {MIN_SIZE} pixels, got {self.image_size}",
                None,
            ),
            (0 <= self.val_split < 1, f"--val-split must be in [0, 1), got {self.val_split}", None),
            (0 <= self.holdout < 0.5, f"--holdout must be in [0, 0.5), got {self.holdout}", None),
            (
                self.outliers is None or self.outliers >= 0,
                f"--outliers must be 0 (off) or a positive weight, got {self.outliers}",
                None,
            ),
            (
                self.outlier_loss in OUTLIER_LOSSES,
                f"--outlier-loss must be one of {', '.join(OUTLIER_LOSSES)}, got {self.outlier_loss!r}",
                None,
            ),
            (0 <= self.refuse < 0.5, f"--refuse must be in [0, 0.5), got {self.refuse}", "e.g. 0.005 for 0.5%"),
            (
                self.refusal_score in OPENSET_METHODS,
                f"--refusal-score must be one of {', '.join(OPENSET_METHODS)}, got {self.refusal_score!r}",
                None,
            ),
            (
                self.save_every >= 0,
                f"--save-every must be 0 (off) or a number of epochs, got {self.save_every}",
                None,
            ),
            (
                0 <= self.save_min_acc <= 1,
                f"--save-min-acc is a fraction of the images, got {self.save_min_acc}",
                "e.g. --save-min-acc 0.97 for 97%",
            ),
        ]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        if "holdout" not in data:  # a run from before held-out images and outliers: resumed as it began
            data = {**data, "holdout": 0.0, "outliers": 0.0, "refuse": 0.0}
        if "refusal_score" not in data:  # a run from before the energy score: its threshold stays on msp
            data = {**data, "refusal_score": "msp"}
        if "amp" not in data:  # a run from before the option trained in float32
            data = {**data, "amp": False}
        if "outlier_loss" not in data:  # a run from before the energy loss: its non-digits train as they began
            data = {**data, "outlier_loss": "uniform"}
        return cls(**{k: v for k, v in data.items() if k in names})


# Named option sets measured in bench/train_speed.py; explicit options override them.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # 8 epochs, the handwriting augmentation and the wider first layer (mnist-bn: 99.38% held-out against
    # mnist-bn16's 99.28% at 8 epochs, bench/train_speed.py --preset best --arch ...): the shipped model's
    # recipe (bench/honest.py), which trained in float32 (--no-amp)
    "best": {"epochs": 8, "distort": 1.0, "arch": "mnist-bn"},
    "one-epoch": {"epochs": 1},
}
PRESET_ARCH_DATASET = "mnist"  # a preset's arch was measured on MNIST: other datasets keep their own network


def preset_options(preset: str, dataset: str) -> dict[str, Any]:
    """The options ``--preset`` sets for ``dataset``: all of them for MNIST; elsewhere all but the network."""
    options = dict(PRESETS[preset])
    if dataset != PRESET_ARCH_DATASET:
        options.pop("arch", None)
    return options
