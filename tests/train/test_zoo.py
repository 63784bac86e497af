"""The seed networks added for CIFAR-10 and seed 002's LeNet: a state_dict from the seed's own class loads.

The seed classes, as the users wrote them, are in tests/support/seed_nets.py.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from cnnx.core.errors import ConfigError  # noqa: E402
from cnnx.train.models import build_model, check_input  # noqa: E402
from tests.support.seed_nets import Module, Net, Tudui, lenet  # noqa: E402


@pytest.mark.parametrize(
    "arch, seed_class, shape",
    [
        ("seed002-module", Module, (3, 32, 32)),
        ("seed002-tudui", Tudui, (3, 32, 32)),
        ("seed003-net", Net, (3, 32, 32)),
        ("seed002-lenet", lenet, (1, 28, 28)),
    ],
)
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
