"""BatchNorm folded into the convolution before it (cnnx.export.fold): the same outputs, only where exact."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from cnnx.export.fold import fold_batchnorm  # noqa: E402
from cnnx.train.models import ARCHS  # noqa: E402

# BatchNorm layers each network folds: every one (the seed networks without BatchNorm fold none)
FOLDED = {"mnist-bn16": 3, "mnist-bn16s": 3, "mnist-bn": 3, "mnist-bn-wide": 3, "cifar-bn": 6, "seed004-demomodel": 1}


def _trained_like(model: nn.Module, seed: int = 0) -> nn.Module:
    """``model`` with BatchNorm statistics and affine parameters away from their initial 0 and 1, as
    training leaves them (scales positive)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g))
            m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.2)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.3)
            m.bias.data.copy_(torch.randn(n, generator=g))
    return model.eval()


def _input(name: str) -> torch.Tensor:
    c, h, w = ARCHS[name].input_shape
    return torch.randn(5, c, h, w, generator=torch.Generator().manual_seed(1))


def _batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_every_network_computes_the_same_with_its_batchnorms_folded(name: str) -> None:
    model = _trained_like(ARCHS[name].build(10))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = _input(name)
    with torch.no_grad():
        expected = model(x)
        folded, count = fold_batchnorm(model)
        got = folded(x)
    assert count == FOLDED.get(name, 0) and _batchnorms(folded) == _batchnorms(model) - count
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the checkpoint's own untouched


def test_a_negative_scale_behind_a_max_pool_is_left_and_in_front_of_none_is_folded() -> None:
    model = _trained_like(ARCHS["mnist-bn"].build(10))
    first = model.features[2]  # conv -> max-pool -> this BatchNorm -> ReLU
    last = model.features[9]  # conv -> this BatchNorm: no pool between
    assert isinstance(first, nn.BatchNorm2d) and isinstance(last, nn.BatchNorm2d)
    with torch.no_grad():
        first.weight[3] = -0.5  # max(-x) is not -max(x): this one cannot pass the pool
        last.weight[5] = -0.5  # a BatchNorm right after its convolution folds whatever its sign
    x = _input("mnist-bn")
    with torch.no_grad():
        folded, count = fold_batchnorm(model)
        torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-5)
    assert count == 2 and isinstance(folded.features[2], nn.BatchNorm2d) and isinstance(folded.features[9], nn.Identity)


@pytest.mark.parametrize(
    ("pool", "folds"),
    [
        (nn.AvgPool2d(2), True),  # an average of s * x + t is s * (the average) + t
        (nn.AvgPool2d(2, padding=1), False),  # ... unless padded zeros join the average
        (nn.AvgPool2d(2, padding=1, count_include_pad=False), True),
        (nn.AvgPool2d(2, divisor_override=3), False),
        (nn.MaxPool2d(3, stride=1, padding=1), True),  # max-pool padding is -inf: a positive map passes it
        (nn.Dropout(0.1), False),  # anything else between them keeps the BatchNorm
    ],
)
def test_which_layers_between_conv_and_batchnorm_a_fold_may_cross(pool: nn.Module, folds: bool) -> None:
    model = _trained_like(nn.Sequential(nn.Conv2d(3, 8, 3), pool, nn.BatchNorm2d(8), nn.ReLU()))
    x = torch.randn(4, 3, 12, 12, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        folded, count = fold_batchnorm(model)
        torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-5)
    assert count == int(folds)


def test_a_convolution_used_twice_or_batch_statistics_are_not_folded() -> None:
    block = _trained_like(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)))
    twice = nn.Sequential(block, nn.ReLU(), nn.Sequential(block[0], nn.ReLU()))  # the same conv in two places
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        folded, count = fold_batchnorm(twice)
        torch.testing.assert_close(folded(x), twice(x))
    assert count == 0
    stats = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4, track_running_stats=False)).eval()
    assert fold_batchnorm(stats)[1] == 0  # normalises by each batch's own statistics: no fixed map to fold
