"""The registry: every model returns logits, and the seed notes' own classes' state_dicts load."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from cnnx.core.errors import ConfigError  # noqa: E402
from cnnx.train.models import ARCHS, build_model, get_arch  # noqa: E402
from tests.support.seed_nets import Seed000, Seed001, Seed002, Seed004  # noqa: E402

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


def test_digits_default_to_mnist_bn16_and_mnist_bn_keeps_its_widths() -> None:
    """Checkpoints name their network; one trained as mnist-bn (the shipped model's, the default until
    mnist-bn16) must still build with the shapes its state_dict holds."""
    from cnnx.train.data import default_arch

    assert default_arch("mnist") == "mnist-bn16"
    assert default_arch("folder", (1, 28, 28)) == "mnist-bn16"  # grey 28x28 folders train the digits' default
    shapes = {name: [tuple(p.shape) for p in build_model(name, 10).parameters()] for name in ("mnist-bn", "mnist-bn16")}
    assert shapes["mnist-bn"][0] == (24, 1, 5, 5) and shapes["mnist-bn16"][0] == (16, 1, 5, 5)
    assert [sum(torch.Size(s).numel() for s in v) for v in shapes.values()] == [78_194, 74_522]


def test_mnist_bn16s_steps_its_first_conv_instead_of_pooling() -> None:
    """mnist-bn16s: the same parameters and 12x12 first maps as mnist-bn16, made by a stride-2 conv."""
    strided, pooled = build_model("mnist-bn16s", 10), build_model("mnist-bn16", 10)
    assert [p.shape for p in strided.parameters()] == [p.shape for p in pooled.parameters()]
    first = strided.features[0]
    assert isinstance(first, torch.nn.Conv2d) and first.stride == (2, 2)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in strided.features[:3])
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert strided.features[:3](x).shape == pooled.features[:4](x).shape == (2, 16, 12, 12)
