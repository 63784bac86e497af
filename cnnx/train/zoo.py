"""Networks for colour images and the remaining seed networks; registered in ``cnnx.train.models.ARCHS``.

As in ``models.py``, every seed network keeps the parameter names of the script
it comes from, so a ``state_dict`` that script saved loads here unchanged, and
every model returns logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Seed002LeNet(nn.Sequential):
    """The LeNet-style ``net = torch.nn.Sequential(...)`` of seed note 002 (section 2.14.1).

    (N, 1, 28, 28) -> conv5x5(6, pad 2) -> sigmoid -> avgpool -> conv5x5(16) -> sigmoid
    -> avgpool -> fc 400 -> 120 -> 84 -> 10, sigmoids between. A subclass of
    ``nn.Sequential`` so its ``state_dict`` keys are the seed's own (``0.weight``,
    ``3.weight``, ``7.weight``, ``9.weight``, ``11.weight``) and ``cnnx summary``
    prints the shapes the note prints. The note only printed shapes; it has no bug.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__(
            nn.Conv2d(1, 6, kernel_size=5, padding=2),  # (N, 6, 28, 28)
            nn.Sigmoid(),
            nn.AvgPool2d(2, stride=2),  # (N, 6, 14, 14)
            nn.Conv2d(6, 16, kernel_size=5),  # (N, 16, 10, 10)
            nn.Sigmoid(),
            nn.AvgPool2d(kernel_size=2, stride=2),  # (N, 16, 5, 5)
            nn.Flatten(),  # (N, 400)
            nn.Linear(16 * 5 * 5, 120),
            nn.Sigmoid(),
            nn.Linear(120, 84),
            nn.Sigmoid(),
            nn.Linear(84, num_classes),
        )


class Seed002Module(nn.Module):
    """The CIFAR-10 ``Module`` of seed note 002's training script: conv 32/32/64 (5x5), fc 1024 -> 64 -> 10.

    (N, 3, 32, 32) -> [conv5x5 pad 2 -> maxpool] x3 -> (N, 64, 4, 4) -> fc 1024 -> 64 -> relu -> 10.
    No activation after the convolutions (max pooling is the only non-linearity
    there), exactly as in the seed. Its ``module_N.pth`` files load here.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.model = nn.Sequential(
            nn.Conv2d(3, 32, 5, 1, 2),  # (N, 32, 32, 32)
            nn.MaxPool2d(2),  # (N, 32, 16, 16)
            nn.Conv2d(32, 32, 5, 1, 2),
            nn.MaxPool2d(2),  # (N, 32, 8, 8)
            nn.Conv2d(32, 64, 5, 1, 2),
            nn.MaxPool2d(2),  # (N, 64, 4, 4)
            nn.Flatten(),  # (N, 1024)
            nn.Linear(64 * 4 * 4, 64),
            nn.ReLU(),
            nn.Linear(64, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class Seed002Tudui(nn.Module):
    """The CIFAR-10 ``Tudui`` of seed note 002's inference script: ``Module`` without the ReLU.

    Kept as the seed wrote it, so a ``state_dict`` saved from a ``Tudui`` loads
    (keys ``model.0`` ... ``model.7``, ``model.8``). Note the seed's mismatch: its
    inference script loads ``module_9.pth`` from the training script, whose last
    layer is ``model.9`` (after the ReLU) and which therefore does not load into
    ``Tudui``; load those files with ``--arch seed002-module``. Without the ReLU its
    two linear layers compose into one linear map of rank at most 64.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.model = nn.Sequential(
            nn.Conv2d(3, 32, 5, 1, 2),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 5, 1, 2),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, 1, 2),
            nn.MaxPool2d(2),  # (N, 64, 4, 4)
            nn.Flatten(),  # (N, 1024)
            nn.Linear(64 * 4 * 4, 64),
            nn.Linear(64, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class Seed003Net(nn.Module):
    """The CIFAR-10 ``Net`` of seed note 003 (the PyTorch tutorial's): conv 6/16 (5x5), fc 120/84.

    (N, 3, 32, 32) -> conv(6) -> relu -> pool (N, 6, 14, 14) -> conv(16) -> relu -> pool
    (N, 16, 5, 5) -> fc 400 -> 120 -> 84 -> 10. Corrected: the seed flattened with
    ``x.view(-1, 16 * 5 * 5)``, which on a wrongly sized input silently folds
    pixels into the batch; ``torch.flatten(x, 1)`` keeps the batch and lets a
    wrong size fail loudly in ``fc1``. Same parameters and outputs otherwise.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))  # (N, 6, 14, 14)
        x = self.pool(F.relu(self.conv2(x)))  # (N, 16, 5, 5)
        x = torch.flatten(x, 1)  # (N, 400)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


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
            *_conv_bn(in_channels, w), *_conv_bn(w, w), nn.MaxPool2d(2),  # (N, w, H/2, W/2)
            *_conv_bn(w, 2 * w), *_conv_bn(2 * w, 2 * w), nn.MaxPool2d(2),  # (N, 2w, H/4, W/4)
            *_conv_bn(2 * w, 4 * w), *_conv_bn(4 * w, 4 * w), nn.MaxPool2d(2),  # (N, 4w, H/8, W/8)
        )
        self.head = nn.Linear(4 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # (N, 4w)
        return self.head(x)
