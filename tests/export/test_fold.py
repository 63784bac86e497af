"""The module ONNX files are made from (cnnx.export.fold): BatchNorm folded into the convolution before it,
channels padded to whole blocks; the same outputs, only where exact."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from cnnx.export.fold import BLOCK, fold_batchnorm, pad_channels  # noqa: E402
from cnnx.train.models import ARCHS  # noqa: E402

# BatchNorm layers each network folds: every one (the seed networks without BatchNorm fold none)
FOLDED = {"mnist-bn16": 3, "mnist-bn16s": 3, "mnist-bn": 3, "mnist-bn-wide": 3, "cifar-bn": 6, "seed004-demomodel": 1}
# convolutions each network pads to whole channel blocks once folded: mnist-bn's 24-channel first layer
PADDED = {"mnist-bn": 1}


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


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_every_network_computes_the_same_with_its_channels_padded(name: str) -> None:
    folded, _ = fold_batchnorm(_trained_like(ARCHS[name].build(10)))
    x = _input(name)
    with torch.no_grad():
        expected = folded(x)
        count = pad_channels(folded)
        got = folded(x)
    assert count == PADDED.get(name, 0)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_mnist_bn_first_layer_is_padded_to_a_whole_block_with_zero_filters() -> None:
    model = _trained_like(ARCHS["mnist-bn"].build(10))
    folded, _ = fold_batchnorm(model)
    assert pad_channels(folded) == 1
    first, second = folded.features[0], folded.features[4]
    assert first.out_channels == second.in_channels == 32 and 32 % BLOCK == 0
    assert not first.weight[24:].any() and not first.bias[24:].any() and not second.weight[:, 24:].any()
    torch.testing.assert_close(first.weight[:24], folded.features[0].weight[:24])
    assert model.features[0].out_channels == 24  # the checkpoint's own module untouched (fold copied it)
    assert pad_channels(folded) == 0  # padded once: nothing more to do


@pytest.mark.parametrize(
    ("between", "pads"),
    [
        ([nn.MaxPool2d(2), nn.Identity(), nn.ReLU()], True),  # a folded block: zero channels stay zero
        ([nn.ReLU(), nn.Dropout2d(0.1)], True),
        ([nn.BatchNorm2d(24)], False),  # an unfolded BatchNorm's parameters are sized by the channels
        ([nn.Flatten()], False),  # no convolution after: nothing would read the zeros
    ],
)
def test_which_layers_between_two_convolutions_padding_may_cross(between: list[nn.Module], pads: bool) -> None:
    model = _trained_like(nn.Sequential(nn.Conv2d(1, 24, 3), *between, nn.Conv2d(24, 16, 3)))
    if isinstance(between[0], nn.Flatten):
        model = nn.Sequential(nn.Conv2d(1, 24, 3), nn.Flatten()).eval()
    x = torch.randn(3, 1, 12, 12, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = model(x)
        count = pad_channels(model)
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
    assert count == int(pads)


def test_padding_that_would_add_more_than_half_the_channels_or_grouped_convolutions_are_left() -> None:
    few = nn.Sequential(nn.Conv2d(1, 10, 3), nn.ReLU(), nn.Conv2d(10, 16, 3)).eval()  # 10 -> 16: +60%
    grouped = nn.Sequential(nn.Conv2d(24, 24, 3, groups=24), nn.Conv2d(24, 16, 1)).eval()
    assert pad_channels(few) == 0 and pad_channels(grouped) == 0
    assert few[0].out_channels == 10 and grouped[0].out_channels == 24


@pytest.mark.parametrize("fmt", ["ort", "openvino"])
def test_an_exported_mnist_bn_file_is_padded_passes_its_gate_and_says_so(tmp_path, fmt: str) -> None:
    """End to end: the real CLI exports a mnist-bn state_dict; the fp32 file's first convolution has
    32 filters, its spec says so, and the parity gate (against the unpadded checkpoint) passes. The
    .ort / OpenVINO file beside it, whose kernels keep plain NCHW, is made from the unpadded graph."""
    import json

    import onnx

    from cnnx.core.spec import ModelSpec
    from cnnx.export.formats import FORMATS
    from tests.support import MINI_MNIST, run_cli

    if fmt == "openvino":
        pytest.importorskip("openvino")
    state = tmp_path / "net.pt"
    torch.save(_trained_like(ARCHS["mnist-bn"].build(10)).state_dict(), state)
    out = tmp_path / "out"
    args = ("--arch", "mnist-bn", "--format", fmt, "--data-dir", str(MINI_MNIST), "--out", str(out))
    proc = run_cli("export", str(state), *args, check=True)
    report = json.loads((out / "parity.json").read_text())
    assert report["formats"]["onnx"]["passed"] and report["formats"][fmt]["passed"]
    assert "padded 1 convolution with zero filters" in proc.stdout + proc.stderr
    proto = onnx.load(str(out / "net.onnx"))
    first = next(n for n in proto.graph.node if n.op_type == "Conv").input[1]
    assert [list(i.dims) for i in proto.graph.initializer if i.name == first] == [[32, 1, 5, 5]]
    extra = ModelSpec.from_onnx_metadata({p.key: p.value for p in proto.metadata_props}).extra
    assert extra["channels_padded"] == 1 and extra["batchnorm_folded"] == 3
    made = FORMATS[fmt].load(out / f"net{FORMATS[fmt].SUFFIX}", 1).spec().extra
    assert made["batchnorm_folded"] == 3 and "channels_padded" not in made
    assert sorted(p.name for p in out.iterdir() if "unpadded" in p.name) == []  # its source is not left behind
    if fmt == "openvino":
        assert 'shape="24, 1, 5, 5"' in (out / "net.xml").read_text()


def test_no_pad_channels_exports_the_layers_as_trained(tmp_path) -> None:
    """--no-pad-channels, for a device whose onnxruntime has no blocked kernels: 24 filters, no claim."""
    import onnx

    from cnnx.core.spec import ModelSpec
    from tests.support import MINI_MNIST, run_cli

    state = tmp_path / "net.pt"
    torch.save(_trained_like(ARCHS["mnist-bn"].build(10)).state_dict(), state)
    out = tmp_path / "out"
    args = ("--arch", "mnist-bn", "--no-pad-channels", "--data-dir", str(MINI_MNIST), "--out", str(out))
    proc = run_cli("export", str(state), *args, check=True)
    assert "padded" not in proc.stdout + proc.stderr
    proto = onnx.load(str(out / "net.onnx"))
    first = next(n for n in proto.graph.node if n.op_type == "Conv").input[1]
    assert [list(i.dims) for i in proto.graph.initializer if i.name == first] == [[24, 1, 5, 5]]
    extra = ModelSpec.from_onnx_metadata({p.key: p.value for p in proto.metadata_props}).extra
    assert "channels_padded" not in extra and extra["batchnorm_folded"] == 3
