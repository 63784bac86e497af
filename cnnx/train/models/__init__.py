"""Architectures by name: cnnx's own networks (``nets``) and the seed notes' (``seeds``).

Every model is a plain ``nn.Module`` that returns logits. A new architecture is a
class in one of those modules and one ``Arch`` line in ``ARCHS``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from cnnx.core.contract import first_line
from cnnx.core.errors import ConfigError
from cnnx.train.models.nets import CifarBN, MnistBN
from cnnx.train.models.seeds import (
    Seed000Net,
    Seed001Net,
    Seed002LeNet,
    Seed002Module,
    Seed002Net,
    Seed002Tudui,
    Seed003Net,
    Seed004DemoModel,
)


@dataclass(frozen=True)
class Arch:
    name: str
    build: Callable[[int], nn.Module]  # num_classes -> model
    input_shape: tuple[int, int, int]  # (C, H, W) it is built for
    dataset: str  # the dataset its defaults were chosen on
    summary: str  # one line for `--help` and the README


_MNIST = (1, 28, 28)
_CIFAR = (3, 32, 32)
ARCHS: dict[str, Arch] = {
    a.name: a
    for a in [
        Arch(
            "mnist-bn16",
            lambda n: MnistBN(n, (16, 48, 128)),
            _MNIST,
            "mnist",
            "default: mnist-bn with 16 first-layer channels, 75k parameters, 0.6x the training time",
        ),
        Arch(
            "mnist-bn16s",
            lambda n: MnistBN(n, (16, 48, 128), strided=True),
            _MNIST,
            "mnist",
            "mnist-bn16 with a stride-2 first conv for its pool: 0.8x the time, a shade less accurate",
        ),
        Arch("mnist-bn", MnistBN, _MNIST, "mnist", "3-conv BatchNorm CNN 24/48/128, 78k parameters: --preset best's"),
        Arch(
            "mnist-bn-wide",
            lambda n: MnistBN(n, (32, 64, 128)),
            _MNIST,
            "mnist",
            "mnist-bn with 32/64/128 channels, 105k parameters",
        ),
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
        raise ConfigError(
            f"{name} takes {arch.input_shape[0]}-channel images, not {input_shape[0]}",
            "pick an architecture that adapts (cifar-bn), or match the colour mode",
        )
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
        first = first_line(exc)
        size = "x".join(map(str, get_arch(name).input_shape))
        raise ConfigError(
            f"{name} cannot take {'x'.join(map(str, input_shape))} images ({first})",
            f"it is built for {size}: use --image-size/--grayscale to match, or --arch cifar-bn, which takes any size",
        ) from None
    finally:
        model.train(was_training)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def fitting_archs(state: Mapping[str, torch.Tensor]) -> list[str]:
    """Registered architectures whose parameter names and shapes match ``state`` exactly."""
    have = {k: tuple(v.shape) for k, v in state.items()}
    num_classes = num_classes_of(state)  # the class count is the one free dimension
    found = []
    for name, arch in ARCHS.items():
        want = {k: tuple(v.shape) for k, v in arch.build(num_classes).state_dict().items()}
        if want == have:
            found.append(name)
    return found


def num_classes_of(state: Mapping[str, torch.Tensor]) -> int:
    """Output width of a state_dict: the length of its last 1-d tensor (the classifier's bias); 10 if none."""
    return next((len(v) for v in reversed(list(state.values())) if v.ndim == 1), 10)
