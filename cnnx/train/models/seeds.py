"""The networks of the seed notes, registered in ``cnnx.train.models.ARCHS``.

Every seed network keeps the parameter names of the script it comes from, so a
``state_dict`` that script saved loads here unchanged. Where a seed ended its
model in softmax or log_softmax before ``CrossEntropyLoss`` the registered
model stops at the logits; its docstring says so.
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
