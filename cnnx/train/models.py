"""Architectures by name. Every model is a plain ``nn.Module`` that returns logits.

The seed networks keep the attribute names of the scripts they come from, so a
``state_dict`` those scripts saved loads here unchanged. Where a seed ended its
model in softmax or log_softmax before ``CrossEntropyLoss`` the registered
model stops at the logits; its docstring says so.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from cnnx.errors import ConfigError
from cnnx.train.zoo import CifarBN, Seed002LeNet, Seed002Module, Seed002Tudui, Seed003Net


@dataclass(frozen=True)
class Arch:
    name: str
    build: Callable[[int], nn.Module]  # num_classes -> model
    input_shape: tuple[int, int, int]  # (C, H, W) it is built for
    dataset: str  # the dataset its defaults were chosen on
    summary: str  # one line for `--help` and the README


def _conv_pool_bn(cin: int, cout: int, k: int) -> list[nn.Module]:
    # pooling before BatchNorm: BN and ReLU then run on a quarter of the pixels
    return [nn.Conv2d(cin, cout, k, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class MnistBN(nn.Module):
    """cnnx's default MNIST network: a small BatchNorm CNN chosen by measurement.

    (N, 1, 28, 28) -> conv5x5(c1) -> pool -> BN/ReLU    (N, c1, 12, 12)
                   -> conv3x3(c2) -> pool -> BN/ReLU    (N, c2, 5, 5)
                   -> conv3x3(c3) -> BN/ReLU            (N, c3, 3, 3)
                   -> linear(9 * c3 -> classes)
    With (24, 48, 128): 78,194 parameters (312 KB fp32 ONNX, 90 KB int8), 1.9 M
    multiply-accumulates per image. On a 2-core CPU it reaches 99.2-99.3% after
    two epochs and 99.4-99.5% after three (bench/train_speed.py). Wider 5-conv
    variants were 2-4x slower per epoch for no accuracy gain at equal time; the
    128-channel last conv (instead of 64) costs little time and keeps the int8
    file under 30% of the fp32 one (fixed quantisation overhead is ~11 KB).
    """

    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int] = (24, 48, 128)) -> None:
        super().__init__()
        c1, c2, c3 = widths
        self.features = nn.Sequential(
            *_conv_pool_bn(1, c1, 5),
            *_conv_pool_bn(c1, c2, 3),
            nn.Conv2d(c2, c3, 3, bias=False), nn.BatchNorm2d(c3), nn.ReLU(inplace=True),
        )
        self.head = nn.Linear(9 * c3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))  # (N, 9 * c3) -> (N, classes)


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
_CIFAR = (3, 32, 32)
ARCHS: dict[str, Arch] = {
    a.name: a
    for a in [
        Arch("mnist-bn", MnistBN, _MNIST, "mnist", "default: 3-conv BatchNorm CNN, 78k parameters"),
        Arch("mnist-bn-wide", lambda n: MnistBN(n, (32, 64, 128)), _MNIST, "mnist",
             "wider default (32/64/128), 105k parameters: the `best` preset"),
        Arch("seed000-net", Seed000Net, _MNIST, "mnist", "seed 000 Net: conv 10/20, dropout"),
        Arch("seed001-net", Seed001Net, _MNIST, "mnist", "seed 001 Net: conv 30/60 padded, fc 2940"),
        Arch("seed002-net", Seed002Net, _MNIST, "mnist", "seed 002 NET: Sequential conv 10/20, fc 500"),
        Arch("seed004-demomodel", Seed004DemoModel, _MNIST, "mnist", "seed 004 DemoModel: conv 8/16, BatchNorm"),
        Arch("seed002-lenet", Seed002LeNet, _MNIST, "mnist", "seed 002 LeNet Sequential: sigmoid, avg-pool"),
        Arch("cifar-bn", CifarBN, _CIFAR, "cifar10", "default colour/folder net: 6-conv BatchNorm, any size"),
        Arch("seed002-module", Seed002Module, _CIFAR, "cifar10", "seed 002 Module: conv 32/32/64, fc 64"),
        Arch("seed002-tudui", Seed002Tudui, _CIFAR, "cifar10", "seed 002 Tudui: Module without the ReLU"),
        Arch("seed003-net", Seed003Net, _CIFAR, "cifar10", "seed 003 Net: conv 6/16, fc 120/84"),
    ]
}
# "folder": any ImageFolder tree; its network must take any size and channel count
DEFAULT_ARCH = {"mnist": "mnist-bn", "cifar10": "cifar-bn", "folder": "cifar-bn"}


def get_arch(name: str) -> Arch:
    try:
        return ARCHS[name]
    except KeyError:
        raise ConfigError(f"unknown architecture {name!r}", f"choose one of: {', '.join(ARCHS)}") from None


def build_model(name: str, num_classes: int, input_shape: tuple[int, int, int] | None = None) -> nn.Module:
    """Build ``name`` for ``num_classes``; ``input_shape`` (C, H, W) picks the input channels of networks that adapt."""
    arch = get_arch(name)
    if input_shape is None or input_shape[0] == arch.input_shape[0]:
        return arch.build(num_classes)
    if "in_channels" not in inspect.signature(arch.build).parameters:
        raise ConfigError(f"{name} takes {arch.input_shape[0]}-channel images, not {input_shape[0]}",
                          "pick an architecture that adapts (cifar-bn), or match the colour mode")
    return arch.build(num_classes, in_channels=input_shape[0])  # type: ignore[call-arg]


@torch.no_grad()
def check_input(model: nn.Module, name: str, input_shape: tuple[int, int, int]) -> None:
    """Fail before training, not after an epoch, when a fixed-size network cannot take the data's images."""
    was_training = model.training
    model.eval()  # no BatchNorm statistics are touched
    try:
        param = next(model.parameters(), None)
        model(torch.zeros(2, *input_shape, device=param.device if param is not None else None))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        size = "x".join(map(str, get_arch(name).input_shape))
        raise ConfigError(f"{name} cannot take {'x'.join(map(str, input_shape))} images ({first})",
                          f"it is built for {size}: use --image-size/--grayscale to match, "
                          "or --arch cifar-bn, which takes any size") from None
    finally:
        model.train(was_training)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
