"""cnnx's own networks, chosen by measurement: ``mnist-bn`` for digits, ``cifar-bn`` for colour
images and image folders. Registered by name in ``cnnx.train.models.ARCHS``; each returns logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv_pool_bn(cin: int, cout: int, k: int) -> list[nn.Module]:
    # pooling before BatchNorm: BN and ReLU then run on a quarter of the pixels
    return [nn.Conv2d(cin, cout, k, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class MnistBN(nn.Module):
    """cnnx's MNIST network: a small BatchNorm CNN chosen by measurement.

    (N, 1, 28, 28) -> conv5x5(c1) -> pool -> BN/ReLU    (N, c1, 12, 12)
                   -> conv3x3(c2) -> pool -> BN/ReLU    (N, c2, 5, 5)
                   -> conv3x3(c3) -> BN/ReLU            (N, c3, 3, 3)
                   -> linear(9 * c3 -> classes)
    ``mnist-bn`` is (24, 48, 128): 78,194 parameters, 1.9 M multiply-accumulates per
    image. ``mnist-bn16`` (the default for digits) is (16, 48, 128): 74,522 parameters,
    1.4 M multiply-accumulates, and an epoch in 0.58x the time on a CPU with AVX-512,
    for the same held-out accuracy (bench/train_speed.py --arch ...). Most of the saving
    is not the FLOPs: the first block's maps are the largest tensors of a step, and
    with 24 channels (not a multiple of the 16 floats a vector holds) their channels_last
    max-pool backward, BatchNorm backward and gradient zero-fill fall off the
    vectorised paths (4-8x slower each, in torch.profiler). ``mnist-bn16s`` makes the
    first maps with a stride-2 conv instead of conv and pool: 1.3 M multiply-accumulates,
    0.80x mnist-bn16's whole-command time, and 0.04-0.05 points less accurate held out and
    on test over five seeds (bench/results/train_speed-default-strided.json). Wider 5-conv variants were
    2-4x slower per epoch for no accuracy gain at equal time; the 128-channel last conv
    (instead of 64) costs little time and keeps the int8 file under 30% of the fp32 one
    (fixed quantisation overhead is ~11 KB).
    """

    def __init__(
        self, num_classes: int = 10, widths: tuple[int, int, int] = (24, 48, 128), strided: bool = False
    ) -> None:
        super().__init__()
        c1, c2, c3 = widths
        # strided: the first conv steps 2 pixels instead of pooling after it: the same (N, c1, 12, 12)
        # maps without computing or keeping the 24x24 ones
        first = (
            [nn.Conv2d(1, c1, 5, stride=2, bias=False), nn.BatchNorm2d(c1), nn.ReLU(inplace=True)]
            if strided
            else _conv_pool_bn(1, c1, 5)
        )
        self.features = nn.Sequential(
            *first,
            *_conv_pool_bn(c1, c2, 3),
            nn.Conv2d(c2, c3, 3, bias=False),
            nn.BatchNorm2d(c3),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Linear(9 * c3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))  # (N, 9 * c3) -> (N, classes)


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class CifarBN(nn.Module):
    """cnnx's default network for CIFAR-10 and image folders: three BatchNorm conv stages, global pool.

    (N, C, H, W) -> 2x conv3x3(w) -> pool -> 2x conv3x3(2w) -> pool -> 2x conv3x3(4w)
    -> pool -> global average pool -> linear. w = 32: about 288k parameters and
    39M multiply-accumulates per 32x32 RGB image, sized to train on a 2-core CPU.
    The global pool makes it take any image size of 8 pixels or more and any
    number of channels (grayscale folders), so one network serves every folder.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 32) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *_conv_bn(in_channels, w),
            *_conv_bn(w, w),
            nn.MaxPool2d(2),  # (N, w, H/2, W/2)
            *_conv_bn(w, 2 * w),
            *_conv_bn(2 * w, 2 * w),
            nn.MaxPool2d(2),  # (N, 2w, H/4, W/4)
            *_conv_bn(2 * w, 4 * w),
            *_conv_bn(4 * w, 4 * w),
            nn.MaxPool2d(2),  # (N, 4w, H/8, W/8)
        )
        self.head = nn.Linear(4 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # (N, 4w)
        return self.head(x)
