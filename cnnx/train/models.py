"""Architectures by name. Every model is a plain ``nn.Module`` that returns logits.

The seed networks keep the attribute names of the scripts they come from, so a
``state_dict`` those scripts saved loads here unchanged. Where a seed ended its
model in softmax or log_softmax before ``CrossEntropyLoss`` the registered
model stops at the logits; its docstring says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from cnnx.errors import ConfigError


@dataclass(frozen=True)
class Arch:
    name: str
    build: Callable[[int], nn.Module]  # num_classes -> model
    input_shape: tuple[int, int, int]  # (C, H, W) it is built for
    dataset: str  # the dataset its defaults were chosen on
    summary: str  # one line for `--help` and the README


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class MnistBN(nn.Module):
    """cnnx's default MNIST network: a small BatchNorm CNN chosen by measurement.

    (N, 1, 28, 28) -> 2x conv3x3(32) -> pool -> 2x conv3x3(64) -> pool
    -> conv3x3(128) -> global average pool -> linear(10). About 150k
    parameters, 600 KB fp32; BatchNorm makes high learning rates and the
    one-cycle schedule stable, the global pool keeps the head tiny.
    """

    def __init__(self, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *_conv_bn(1, w), *_conv_bn(w, w), nn.MaxPool2d(2),  # (N, w, 14, 14)
            *_conv_bn(w, 2 * w), *_conv_bn(2 * w, 2 * w), nn.MaxPool2d(2),  # (N, 2w, 7, 7)
            *_conv_bn(2 * w, 4 * w),  # (N, 4w, 7, 7)
        )
        self.head = nn.Linear(4 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # (N, 4w)
        return self.head(x)


class Seed000Net(nn.Module):
    """The 2-conv ``Net`` of seed note 000 (pytorch/examples style): conv 10/20, dropout.

    Same parameter names and shapes as the seed. The seed normalised with a
    wrong std (0.3801); cnnx uses MNIST's real std, 0.3081.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.max_pool2d(self.conv1(x), 2))  # (N, 10, 12, 12)
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))  # (N, 20, 4, 4)
        x = torch.flatten(x, 1)
        x = F.dropout(F.relu(self.fc1(x)), training=self.training)
        return self.fc2(x)


class Seed001Net(nn.Module):
    """The wider padded ``Net`` of seed note 001: conv 30/60, fc 2940 -> 50 -> 10.

    Corrected: the seed returned ``log_softmax`` and then applied
    ``CrossEntropyLoss``, which takes log_softmax again; this model returns logits.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 30, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(30, 60, kernel_size=5, padding=2)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(2940, 50)
        self.fc2 = nn.Linear(50, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.max_pool2d(self.conv1(x), 2))  # (N, 30, 14, 14)
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))  # (N, 60, 7, 7)
        x = torch.flatten(x, 1)  # (N, 2940)
        x = F.dropout(F.relu(self.fc1(x)), training=self.training)
        return self.fc2(x)


class Seed002Net(nn.Module):
    """The ``NET`` Sequential of seed note 002: conv 10 (5x5), pool, conv 20 (3x3), fc 2000 -> 500 -> 10."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.model = nn.Sequential(
            nn.Conv2d(1, 10, 5),  # (N, 10, 24, 24)
            nn.ReLU(),
            nn.MaxPool2d(2, 2),  # (N, 10, 12, 12)
            nn.Conv2d(10, 20, 3),  # (N, 20, 10, 10)
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(20 * 10 * 10, 500),
            nn.ReLU(),
            nn.Linear(500, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class Seed004DemoModel(nn.Module):
    """The ``DemoModel`` of seed note 004: conv 8, avg-pool, BatchNorm, conv 16, fc 3136 -> 10.

    Corrected: the seed ended in ``nn.Softmax()`` and fed the probabilities to
    ``CrossEntropyLoss``, which squashes the gradients; the softmax is removed.
    It had no parameters, so the seed's ``state_dict`` keys are unchanged.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.model = nn.Sequential(
            nn.Conv2d(1, 8, kernel_size=3, padding="same"),  # (N, 8, 28, 28)
            nn.AvgPool2d(kernel_size=2),  # (N, 8, 14, 14)
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 16, kernel_size=3, padding="same"),  # (N, 16, 14, 14)
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(14 * 14 * 16, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


_MNIST = (1, 28, 28)
ARCHS: dict[str, Arch] = {
    a.name: a
    for a in [
        Arch("mnist-bn", MnistBN, _MNIST, "mnist", "default: 5-conv BatchNorm CNN, global pool"),
        Arch("seed000-net", Seed000Net, _MNIST, "mnist", "seed 000 Net: conv 10/20, dropout"),
        Arch("seed001-net", Seed001Net, _MNIST, "mnist", "seed 001 Net: conv 30/60 padded, fc 2940"),
        Arch("seed002-net", Seed002Net, _MNIST, "mnist", "seed 002 NET: Sequential conv 10/20, fc 500"),
        Arch("seed004-demomodel", Seed004DemoModel, _MNIST, "mnist", "seed 004 DemoModel: conv 8/16, BatchNorm"),
    ]
}
DEFAULT_ARCH = {"mnist": "mnist-bn"}


def get_arch(name: str) -> Arch:
    try:
        return ARCHS[name]
    except KeyError:
        raise ConfigError(f"unknown architecture {name!r}", f"choose one of: {', '.join(ARCHS)}") from None


def build_model(name: str, num_classes: int) -> nn.Module:
    return get_arch(name).build(num_classes)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
