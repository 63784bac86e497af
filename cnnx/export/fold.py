"""The module the ONNX files are made from: BatchNorm folded into the convolution before it, and
channel counts padded to what onnxruntime's blocked kernels take (``pad_channels``).

In eval mode a BatchNorm2d is a per-channel affine map, ``y = s * x + t``, so after a Conv2d it
can become part of the convolution's weights and bias. torch's ONNX exporter and onnxruntime fold
a BatchNorm that follows its convolution directly, but cnnx's digit networks pool first (conv ->
max-pool -> BatchNorm -> ReLU: BatchNorm and ReLU then run on a quarter of the pixels), and
neither folds across the pool. The fold is exact all the same: a max-pool
commutes with a per-channel map whose scale is positive (``max(s * x) + t = s * max(x) + t``), and
an average pool without padding (or counting only real pixels) with any per-channel affine map.
So a BatchNorm is folded when only such pools stand between it and a Conv2d in an nn.Sequential,
and the scale is positive wherever a max-pool stands between them; any other is left as it is.

The checkpoint's own module is not touched: export checks every file against it, so the parity
gate proves each fold on real images (folding moves logits by about 1e-6 in float32).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def _pool_commutes(layer: nn.Module) -> tuple[bool, bool]:
    """(whether ``layer`` is a pool that a per-channel affine map passes through, whether that map's
    scale must then be positive)."""
    if isinstance(layer, nn.MaxPool2d):
        return True, True
    if isinstance(layer, nn.AvgPool2d):
        no_padding = layer.padding in (0, (0, 0)) or not layer.count_include_pad
        return no_padding and layer.divisor_override is None, False
    return False, False


def _affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(scale, shift) of an eval-mode BatchNorm2d, or None when it normalises by batch statistics."""
    if bn.running_mean is None or bn.running_var is None:
        return None
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = bn.weight * scale
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale.detach(), shift.detach()


def fold_batchnorm(model: nn.Module) -> tuple[nn.Module, int]:
    """(an eval-mode copy of ``model`` with every BatchNorm2d that can be folded folded into its
    Conv2d and replaced by nn.Identity, how many were folded). ``model`` itself is not changed."""
    folded = copy.deepcopy(model).eval()
    uses: dict[int, int] = {}  # a module used in two places cannot take the fold for one of them
    for _, m in folded.named_modules(remove_duplicate=False):
        uses[id(m)] = uses.get(id(m), 0) + 1
    count = 0
    for seq in [m for m in folded.modules() if isinstance(m, nn.Sequential)]:
        for i, bn in enumerate(list(seq)):
            if type(bn) is not nn.BatchNorm2d or uses[id(bn)] > 1:
                continue
            j, positive = i - 1, False  # walk back over the pools to the layer that made the input
            while j >= 0:
                crosses, needs_positive = _pool_commutes(seq[j])
                if not crosses:
                    break
                positive |= needs_positive
                j -= 1
            conv = seq[j] if j >= 0 else None
            affine = _affine(bn)
            if type(conv) is not nn.Conv2d or uses[id(conv)] > 1 or affine is None:
                continue
            scale, shift = affine
            if positive and not bool((scale > 0).all()):
                continue
            with torch.no_grad():
                conv.weight.mul_(scale.reshape(-1, 1, 1, 1).to(conv.weight.dtype))
                bias = shift if conv.bias is None else conv.bias * scale + shift
                conv.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=False)
            seq[i] = nn.Identity()
            count += 1
    return folded, count


# onnxruntime's x86 convolutions keep activations in blocks of 8 (AVX2) or 16 (AVX-512) channels
# between layers ("NCHWc"; onnxruntime's ARM64 builds have been gaining such kernels too, not measured
# here). A convolution whose channel count is not a multiple of the block has its output reordered
# back to plain NCHW, and the pools after it run on the slow plain path: in mnist-bn (24 channels
# first) that was 30% of the batch-256 time. Where no blocked kernels run, the zeros are extra work
# (+20% multiply-accumulates for mnist-bn): `cnnx export --no-pad-channels`.
BLOCK = 16
# only pad where the extra zeros cost less than the reorders save (measured: 24 -> 32 on mnist-bn)
MAX_PAD = 0.5
# between two convolutions, the layers a zero channel passes through as zero (or as a constant the
# next convolution's zero weights ignore): per-channel, with no parameters sized by the channels
_CHANNELWISE = (nn.MaxPool2d, nn.AvgPool2d, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Identity, nn.Dropout, nn.Dropout2d)


def pad_channels(model: nn.Module, block: int = BLOCK) -> int:
    """Pad, in place, the output channels of every Conv2d that feeds the next Conv2d of its
    nn.Sequential through per-channel layers only, to a multiple of ``block``: zero filters and zero
    bias, and zero input weights in the next convolution for them. The same arithmetic on every
    real channel, so the outputs do not change (the parity gate checks it); returns how many
    convolutions were padded. Only where the padding adds at most ``MAX_PAD`` of the channels.
    """
    count = 0
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        layers = list(seq)
        for i, conv in enumerate(layers):
            if type(conv) is not nn.Conv2d or conv.groups != 1 or conv.out_channels % block == 0:
                continue
            j = i + 1
            while j < len(layers) and isinstance(layers[j], _CHANNELWISE):
                j += 1
            after = layers[j] if j < len(layers) else None
            if type(after) is not nn.Conv2d or after.groups != 1 or after.in_channels != conv.out_channels:
                continue
            c = conv.out_channels
            padded = -(-c // block) * block
            if padded - c > MAX_PAD * c:
                continue
            seq[i], seq[j] = _widened(conv, padded, out=True), _widened(after, padded, out=False)
            layers = list(seq)
            count += 1
    return count


def _widened(conv: nn.Conv2d, channels: int, out: bool) -> nn.Conv2d:
    """A copy of ``conv`` with its output (``out``) or input channels zero-padded to ``channels``."""
    w = conv.weight.detach()
    shape = (channels, *w.shape[1:]) if out else (w.shape[0], channels, *w.shape[2:])
    weight = torch.zeros(shape, dtype=w.dtype, device=w.device)
    (weight[: w.shape[0]] if out else weight[:, : w.shape[1]]).copy_(w)
    bias = conv.bias.detach() if conv.bias is not None else None
    if out and bias is not None:
        bias = torch.cat([bias, bias.new_zeros(channels - bias.numel())])
    new = nn.Conv2d(
        channels if not out else conv.in_channels,
        channels if out else conv.out_channels,
        conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        bias=bias is not None,
        padding_mode=conv.padding_mode,
    ).to(device=w.device, dtype=w.dtype)
    new.weight = nn.Parameter(weight, requires_grad=False)
    if bias is not None:
        new.bias = nn.Parameter(bias, requires_grad=False)
    return new.eval()
