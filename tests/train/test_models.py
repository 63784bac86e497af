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
