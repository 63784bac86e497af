"""What one training step is made of: schedule, optimiser, input normalisation, augmentation.
(The test-set pass is ``cnnx.train.evaluation``.)

Augmentations take ``part`` and ``drawn``: ``x`` is the ``part`` of a batch of
``drawn`` images, and random numbers are drawn for the whole batch, so every process
of a distributed run consumes the same draws as a single process would.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cnnx.core.contract import normalise_constants


def lr_factor(schedule: str, step: int, total: int, warmup: float) -> float:
    """Multiplier of the peak learning rate at optimiser step ``step`` of ``total``."""
    t = min(step / max(total, 1), 1.0)
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    # one-cycle: cosine warm-up from 1/25 of the peak, cosine anneal to 1/2500 of it
    if t < warmup:
        lo, u = 1 / 25, t / warmup
        return lo + (1 - lo) * 0.5 * (1 - math.cos(math.pi * u))
    lo, u = 1 / 2500, (t - warmup) / (1 - warmup)
    return lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * u))


def make_optimizer(
    model: nn.Module, name: str, lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    """``name`` (config.OPTIMIZERS) over the model's parameters; ``momentum`` is SGD's, or Adam's beta1."""
    params = model.parameters()
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay)
    return torch.optim.AdamW(params, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay)


class Normalizer:
    """uint8 (N, C, H, W) -> float32 normalised, on the tensor's device."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> None:
        scale, bias = normalise_constants(mean, std)  # the runtime's constants: the same input, bit for bit
        self.scale = torch.from_numpy(scale).to(device)
        self.bias = torch.from_numpy(bias).to(device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() * self.scale + self.bias


def random_shift(
    x: torch.Tensor, max_shift: int, gen: torch.Generator, part: slice = slice(None), drawn: int | None = None
) -> torch.Tensor:
    """Translate each image by its own random (dy, dx) in [-max_shift, max_shift], zero-filled.

    ``x`` is the ``part`` of a batch of ``drawn`` images (default: all of it): offsets are drawn
    for the whole batch, so every process of a distributed run consumes the same random numbers.
    """
    n, c, h, w = x.shape
    s = max_shift
    padded = F.pad(x, (s, s, s, s))  # (N, C, H+2s, W+2s)
    dy, dx = torch.randint(0, 2 * s + 1, (2, drawn or n), generator=gen)[:, part].to(x.device)
    rows = torch.arange(h, device=x.device)[None, :] + dy[:, None]  # (N, H)
    cols = torch.arange(w, device=x.device)[None, :] + dx[:, None]  # (N, W)
    b = torch.arange(n, device=x.device)[:, None, None, None]
    ch = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[b, ch, rows[:, None, :, None], cols[:, None, None, :]]


def random_flip(
    x: torch.Tensor, gen: torch.Generator, part: slice = slice(None), drawn: int | None = None
) -> torch.Tensor:
    """Mirror each (N, C, H, W) image left-right with probability 1/2 (the seeds' RandomHorizontalFlip).

    As ``random_shift``: ``x`` is the ``part`` of a batch of ``drawn`` images, all drawn for.
    """
    mask = (torch.rand(drawn or len(x), generator=gen)[part] < 0.5).to(x.device)[:, None, None, None]
    return torch.where(mask, x.flip(3), x)
