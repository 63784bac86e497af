"""What a run leaves beside its checkpoints, and the seed scripts' habits around them.

- ``epoch-NNN.pt`` every ``--save-every`` epochs (the seeds save ``model_{epoch}.pth`` each epoch),
- ``best.pt`` and those snapshots only from ``--save-min-acc`` up (seed 000 saves only at 97% or more),
- ``curves.png`` and ``confusion.png`` at the end of the run.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch

from cnnx.core.errors import ConfigError
from cnnx.train.config import TrainConfig

CURVES, CONFUSION = "curves.png", "confusion.png"


def check_options(cfg: TrainConfig) -> None:
    """Checks of the options this module serves, before any data is loaded."""
    if cfg.save_every < 0:
        raise ConfigError(f"--save-every must be 0 (off) or a number of epochs, got {cfg.save_every}")
    if not 0 <= cfg.save_min_acc <= 1:
        raise ConfigError(
            f"--save-min-acc is a fraction of the test images, got {cfg.save_min_acc}",
            "e.g. --save-min-acc 0.97 for 97%",
        )
    if cfg.image_size is not None and cfg.image_size < 8:
        raise ConfigError(f"--image-size must be at least 8 pixels, got {cfg.image_size}")
    if not 0 <= cfg.val_split < 1:
        raise ConfigError(f"--val-split must be in [0, 1), got {cfg.val_split}")
    if cfg.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(
            "--tensorboard needs the tensorboard package, which is not installed",
            "pip install tensorboard, or train without --tensorboard",
        )


def snapshot_name(epoch: int) -> str:
    return f"epoch-{epoch:03d}.pt"


def keep_files(cfg: TrainConfig, epoch: int, accuracy: float, is_best: bool) -> list[str]:
    """Names of the files beside last.pt that this epoch's checkpoint is also written to."""
    if accuracy < cfg.save_min_acc:
        return []
    names = ["best.pt"] if is_best else []
    if cfg.save_every and epoch % cfg.save_every == 0:
        names.append(snapshot_name(epoch))
    return names


def draw_plots(
    run_dir: Path,
    metrics: list[dict[str, Any]],
    y_true: torch.Tensor,
    y_pred: torch.Tensor,
    classes: list[str],
    title: str,
) -> dict[str, str]:
    """curves.png and confusion.png in ``run_dir``; {"skipped": why} when matplotlib is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        return {"skipped": "matplotlib is not installed"}
    from cnnx.core import plots

    curves = plots.save_curves(metrics, run_dir / CURVES, title)
    epoch = metrics[-1]["epoch"]
    acc = 100 * float((y_true == y_pred).float().mean())
    counts = plots.confusion_matrix(y_true.numpy(), y_pred.numpy(), len(classes))
    confusion = plots.draw_confusion(
        counts, classes, run_dir / CONFUSION, f"{title}: test set after epoch {epoch}, {acc:.2f}% correct"
    )
    return {"curves": str(curves), "confusion": str(confusion)}
