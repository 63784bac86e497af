"""The seed networks added for CIFAR-10 and seed 002's LeNet: a state_dict from the seed's own class loads.

Each class below is copied from the seed notes as the users wrote it.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from cnnx.errors import ConfigError  # noqa: E402
from cnnx.train.models import build_model, check_input  # noqa: E402


class Module(nn.Module):  # seed 002, CIFAR10 training script
    def __init__(self):
        super().__init__()
        self.model = nn.Sequential(
            nn.Conv2d(3, 32, 5, 1, 2), nn.MaxPool2d(2), nn.Conv2d(32, 32, 5, 1, 2), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, 1, 2), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 4 * 4, 64), nn.ReLU(),
            nn.Linear(64, 10),
        )

    def forward(self, x):
        return self.model(x)


class Tudui(nn.Module):  # seed 002, CIFAR10 inference script
    def __init__(self):
        super(Tudui, self).__init__()
        self.model = nn.Sequential(
            nn.Conv2d(3, 32, 5, 1, 2), nn.MaxPool2d(2), nn.Conv2d(32, 32, 5, 1, 2), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, 1, 2), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 4 * 4, 64), nn.Linear(64, 10),
        )

    def forward(self, x):
        return self.model(x)


class Net(nn.Module):  # seed 003
    def __init__(self):
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(-1, 16 * 5 * 5)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = self.fc3(x)
        return x


def lenet():  # seed 002, section 2.14.1
    return torch.nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.Sigmoid(), nn.AvgPool2d(2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(), nn.Linear(120, 84), nn.Sigmoid(), nn.Linear(84, 10),
    )


@pytest.mark.parametrize("arch, seed_class, shape", [
    ("seed002-module", Module, (3, 32, 32)),
    ("seed002-tudui", Tudui, (3, 32, 32)),
    ("seed003-net", Net, (3, 32, 32)),
    ("seed002-lenet", lenet, (1, 28, 28)),
])
def test_seed_state_dict_loads_and_gives_the_same_logits(arch: str, seed_class, shape) -> None:
    torch.manual_seed(0)
    theirs = seed_class().eval()
    ours = build_model(arch, 10).eval()
    ours.load_state_dict(theirs.state_dict())  # strict: same keys, same shapes
    x = torch.rand(4, *shape)
    torch.testing.assert_close(ours(x), theirs(x))


def test_training_script_weights_do_not_fit_the_inference_class() -> None:
    # the seed's own mismatch, kept visible: Module has a ReLU at index 8, Tudui does not
    with pytest.raises(RuntimeError, match="model.9"):
        build_model("seed002-tudui", 10).load_state_dict(Module().state_dict())


def test_cifar_bn_adapts_to_channels_size_and_classes() -> None:
    model = build_model("cifar-bn", 7, (1, 48, 40)).eval()
    assert model(torch.zeros(2, 1, 48, 40)).shape == (2, 7)
    check_input(model, "cifar-bn", (1, 48, 40))


def test_fixed_size_network_refuses_other_images_before_training() -> None:
    with pytest.raises(ConfigError, match="seed003-net cannot take 3x64x64 images"):
        check_input(build_model("seed003-net", 10), "seed003-net", (3, 64, 64))
    with pytest.raises(ConfigError, match="takes 3-channel images, not 1"):
        build_model("seed002-module", 10, (1, 32, 32))
