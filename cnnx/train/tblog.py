"""TensorBoard logging for ``cnnx train --tensorboard``, as the seed scripts do with ``SummaryWriter``.

Per epoch: train/test loss, train/test accuracy and the learning rate as
scalars; once per run: a grid of training images with their labels. The
events go to ``<run folder>/tensorboard``: ``tensorboard --logdir <run folder>``.
``torch.utils.tensorboard`` (and the tensorboard package it needs) is imported
only when the option is on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cnnx.core.errors import ConfigError
from cnnx.train.data import Dataset

SCALARS = {  # tag -> key of the loop's per-epoch record
    "loss/train": "train_loss",
    "loss/test": "test_loss",
    "accuracy/train": "train_accuracy",
    "accuracy/test": "test_accuracy",
    "loss/held_out": "holdout_loss",
    "accuracy/held_out": "holdout_accuracy",
    "lr": "lr",
}


class TensorBoardLog:
    """A thin ``SummaryWriter`` owner; ``start_epoch`` > 0 when resuming drops events of unfinished epochs."""

    def __init__(self, log_dir: Path, start_epoch: int = 0) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "--tensorboard needs the tensorboard package, which is not installed",
                "pip install tensorboard, or train without --tensorboard",
            ) from None
        self.log_dir = Path(log_dir)
        # purge_step: a run resumed after epoch k rewrites epochs k+1.. cleanly
        self.writer = SummaryWriter(str(self.log_dir), purge_step=start_epoch + 1 if start_epoch else None)

    @classmethod
    def for_run(cls, log_dir: Path, epochs_done: int, data: Dataset) -> TensorBoardLog:
        """The log of a run that has ``epochs_done`` epochs behind it; a new run's starts with 32 of its images."""
        log = cls(log_dir, epochs_done)
        if not epochs_done:
            x, y = data.train.x[:32], data.train.y[:32]
            log.images(x, [data.classes[i] for i in y.tolist()])
        return log

    def images(self, x: torch.Tensor, labels: list[str], tag: str = "train images") -> None:
        """uint8 (N, C, H, W) images as one grid, with their labels as text beside it."""
        from torchvision.utils import make_grid

        grid = make_grid(x.cpu(), nrow=8, padding=2)  # (3, H', W') uint8; grey images become 3 channels
        self.writer.add_image(tag, grid, 0)
        self.writer.add_text(f"{tag}/labels", " ".join(labels), 0)

    def epoch(self, record: dict[str, Any]) -> None:
        for tag, key in SCALARS.items():
            if key in record:
                self.writer.add_scalar(tag, record[key], record["epoch"])
        self.writer.flush()  # a crash or Ctrl-C keeps every finished epoch

    def close(self) -> None:
        self.writer.close()


def read_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Scalars written under ``log_dir`` as {tag: [(step, value), ...]} (for tests and reports)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
