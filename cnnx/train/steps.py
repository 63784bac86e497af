"""What one training step is made of: schedule, optimiser, input normalisation, augmentation.
(The test-set pass is ``cnnx.train.evaluation``.)

Augmentations take ``part`` and ``drawn``: ``x`` is the ``part`` of a batch of
``drawn`` images, and random numbers are drawn for the whole batch, so every process
of a distributed run consumes the same draws as a single process would.
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any, TypeVar, cast

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
        return _eager(torch.optim.SGD)(params, lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)
    if name == "adam":
        return _eager(torch.optim.Adam)(params, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay)
    return _eager(torch.optim.AdamW)(params, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay)


_O = TypeVar("_O", bound=torch.optim.Optimizer)
# The optimiser methods torch wraps for torch.compile: the wrappers import torch._dynamo on their first call
_COMPILE_WRAPPED = ("add_param_group", "zero_grad", "state_dict", "load_state_dict", "step")


@functools.cache
def _eager(cls: type[_O]) -> type[_O]:
    """``cls`` with its methods called past torch's torch.compile wrappers: the same arithmetic and state.

    torch wraps an optimiser's ``step``, ``zero_grad``, ``add_param_group`` and ``(load_)state_dict``
    so that torch.compile leaves them alone, and the first call of each imports ``torch._dynamo``: 1.2 s
    on a 2-core CPU, nearly as long as importing torch, in every `cnnx train` (which never compiles).
    Here each runs the function inside the wrappers (``step`` under no_grad, as its wrapper does for
    a non-differentiable optimiser, which cnnx's all are). A torch whose methods are not wrapped this
    way gets ``cls`` back.
    """
    inner = {name: inspect.unwrap(getattr(cls, name)) for name in _COMPILE_WRAPPED}
    if any(fn is getattr(cls, name) for name, fn in inner.items()):
        return cls

    def step(self: torch.optim.Optimizer, closure: Any = None) -> Any:
        with torch.no_grad():
            return inner["step"](self, closure)

    methods: dict[str, Any] = {name: inner[name] for name in _COMPILE_WRAPPED if name != "step"}
    return cast(type[_O], type(cls.__name__, (cls,), {**methods, "step": step, "__module__": __name__}))


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
    n, _, h, w = x.shape
    s = max_shift
    padded = F.pad(x, (s, s, s, s))  # (N, C, H+2s, W+2s)
    dy, dx = torch.randint(0, 2 * s + 1, (2, drawn or n), generator=gen)[:, part].to(x.device)
    windows = padded.unfold(2, h, 1).unfold(3, w, 1)  # (N, C, 2s+1, 2s+1, H, W): every shift, a view
    # one window per image: a copy of N*C*H*W pixels, where indexing each pixel's row and column was 4x slower
    return windows[torch.arange(n, device=x.device), :, dy, dx]


def random_flip(
    x: torch.Tensor, gen: torch.Generator, part: slice = slice(None), drawn: int | None = None
) -> torch.Tensor:
    """Mirror each (N, C, H, W) image left-right with probability 1/2 (the seeds' RandomHorizontalFlip).

    As ``random_shift``: ``x`` is the ``part`` of a batch of ``drawn`` images, all drawn for.
    """
    mask = (torch.rand(drawn or len(x), generator=gen)[part] < 0.5).to(x.device)[:, None, None, None]
    return torch.where(mask, x.flip(3), x)


def random_distort(
    x: torch.Tensor, strength: float, gen: torch.Generator, part: slice = slice(None), drawn: int | None = None
) -> torch.Tensor:
    """How other people write and photograph digits, on a (N, C, H, W) batch: float32 in [0, 255] out.

    Half the images (drawn at random) pass unchanged: resampling softens every image it touches,
    and a model that only ever saw softened digits reads sharp ones worse (measured: 99.17% and a
    test loss of 0.14 against 99.43% and 0.02 with every image distorted). For the other half, one
    resampling per image combines a random affine map (rotation up to 12 degrees, scale
    0.85-1.1, aspect 0.85-1.15, shear up to 0.25, each times ``strength``) with an elastic
    warp (a 4x4 field of random offsets of up to 1.5 pixels, smoothly interpolated); then a
    quarter of the images get thicker strokes (a 2x2 max filter) and a quarter are blurred
    (a 3x3 binomial filter). As ``random_shift``: all ``drawn`` images are drawn for.
    """
    n, c, h, w = x.shape
    total = drawn or n
    u = (torch.rand(total, 6, generator=gen) * 2 - 1)[part].to(x.device)  # (n, 6) in [-1, 1]
    coarse = (torch.rand(total, 2, 4, 4, generator=gen) * 2 - 1)[part].to(x.device)
    pick = torch.rand(total, 3, generator=gen)[part].to(x.device)
    # only the images to distort are computed (each image's arithmetic is its own: the same values as
    # computing all and keeping half, in half the time)
    chosen = (pick[:, 2] < 0.5).nonzero()[:, 0]
    u, coarse, pick, m = u[chosen], coarse[chosen], pick[chosen], len(chosen)
    if m == 0:  # none drawn to distort (a small batch, or this rank's share of one)
        return x.float()
    angle = u[:, 0] * math.radians(12) * strength
    scale = 1 + (u[:, 1] * 0.125 - 0.025) * strength  # 0.85 .. 1.1
    aspect = 1 + u[:, 2] * 0.15 * strength
    shear = u[:, 3] * 0.25 * strength
    cos, sin = torch.cos(angle), torch.sin(angle)
    sx, sy = 1 / (scale * aspect), aspect / scale  # the grid maps output to input: the inverse scale
    theta = torch.stack(
        [
            torch.stack([cos * sx, -sin * sx + shear * sx, torch.zeros_like(cos)], 1),
            torch.stack([sin * sy, cos * sy, torch.zeros_like(cos)], 1),
        ],
        1,
    )  # (m, 2, 3)
    grid = F.affine_grid(theta, [m, c, h, w], align_corners=False)  # (m, H, W, 2) in [-1, 1]
    field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)  # (m, 2, H, W)
    grid = grid + field.permute(0, 2, 3, 1) * (1.5 * strength * 2 / w)  # pixels -> grid units
    out = F.grid_sample(x[chosen].float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    p = F.pad(out, (0, 1, 0, 1))  # a 2x2 max filter as four shifted maxima: max_pool2d's values, in far less time
    thick = torch.maximum(
        torch.maximum(p[..., :-1, :-1], p[..., :-1, 1:]), torch.maximum(p[..., 1:, :-1], p[..., 1:, 1:])
    )
    out = torch.where((pick[:, 0] < 0.25 * strength)[:, None, None, None], thick, out)
    kernel = torch.tensor([1.0, 2.0, 1.0], device=x.device)
    kernel = (kernel[:, None] * kernel[None, :] / 16).expand(c, 1, 3, 3)
    blurred = F.conv2d(F.pad(out, (1, 1, 1, 1), mode="replicate"), kernel, groups=c)
    out = torch.where((pick[:, 1] < 0.25 * strength)[:, None, None, None], blurred, out)
    result = x.float()
    result[chosen] = out
    return result
