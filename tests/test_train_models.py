"""The registry: every model returns logits, and the seed notes' own classes' state_dicts load."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from cnnx.errors import ConfigError  # noqa: E402
from cnnx.train.models import ARCHS, build_model, get_arch  # noqa: E402


# ---- the seed notes' classes, as the scripts wrote them (000, 001, 002, 004) ----

class Seed000(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = x.view(-1, 320)
        x = F.relu(self.fc1(x))
        x = F.dropout(x, training=self.training)
        return self.fc2(x)


class Seed001(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 30, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(30, 60, kernel_size=5, padding=2)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(2940, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = x.view(-1, 2940)
        x = F.relu(self.fc1(x))
        x = F.dropout(x, training=self.training)
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


class Seed002(nn.Module):
    def __init__(self):
        super().__init__()
        self.model = nn.Sequential(
            nn.Conv2d(1, 10, 5), nn.ReLU(), nn.MaxPool2d(2, 2), nn.Conv2d(10, 20, 3), nn.ReLU(),
            nn.Flatten(), nn.Linear(20 * 10 * 10, 500), nn.ReLU(), nn.Linear(500, 10),
        )

    def forward(self, x):
        return self.model(x)


class Seed004(nn.Module):
    def __init__(self):
        super().__init__()
        self.model = nn.Sequential(
            nn.Conv2d(in_channels=1, out_channels=8, kernel_size=3, padding="same"),
            nn.AvgPool2d(kernel_size=2), nn.BatchNorm2d(num_features=8), nn.ReLU(),
            nn.Conv2d(in_channels=8, out_channels=16, kernel_size=3, padding="same"), nn.ReLU(),
            nn.Flatten(), nn.Linear(in_features=14 * 14 * 16, out_features=10), nn.Softmax(dim=1),
        )

    def forward(self, x):
        return self.model(x)


SEEDS = {"seed000-net": Seed000, "seed001-net": Seed001, "seed002-net": Seed002, "seed004-demomodel": Seed004}


@pytest.mark.parametrize("name,seed_cls", SEEDS.items())
def test_seed_state_dict_loads_and_logits_match(name: str, seed_cls: type, tmp_path) -> None:
    torch.manual_seed(0)
    theirs = seed_cls().eval()
    path = tmp_path / "model.pth"
    torch.save(theirs.state_dict(), path)  # what the seed scripts do
    ours = build_model(name, 10).eval()
    ours.load_state_dict(torch.load(path, weights_only=True))  # strict
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        ref, out = theirs(x), ours(x)
    if name == "seed001-net":  # the seed returned log_softmax: same decision, ours is the logits
        torch.testing.assert_close(F.log_softmax(out, 1), ref)
    elif name == "seed004-demomodel":  # the seed returned softmax
        torch.testing.assert_close(F.softmax(out, 1), ref)
    else:
        torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("name", list(ARCHS))
def test_every_arch_returns_logits_of_the_right_shape(name: str) -> None:
    arch = get_arch(name)
    model = build_model(name, 7).eval()
    with torch.no_grad():
        out = model(torch.randn(3, *arch.input_shape))
    assert out.shape == (3, 7)
    assert not torch.allclose(out.sum(1), torch.ones(3))  # logits, not probabilities


def test_unknown_arch_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="mnist-bn"):
        get_arch("resnet9000")
