"""Layer-by-layer summary of a network: output shapes, parameters, multiply-accumulates.

The seed notes print the shape after each layer with a loop over an
``nn.Sequential``; this does the same for any model by tracing it with
``torch.fx`` (so functional calls such as ``F.max_pool2d`` in a ``forward``
show up too) and running one forward pass of zeros through the trace. A model
that cannot be traced falls back to forward hooks on its leaf modules.

MACs count the multiply-accumulates of convolutions and linear layers, the
layers that dominate the cost, for one image; activations, pooling and
normalisation are listed with 0.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnx.core.contract import first_line
from cnnx.core.errors import CheckpointError, ConfigError
from cnnx.core.spec import parse_dims

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _module_macs(module: nn.Module, inp_shape: tuple[int, ...] | None, out_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one call of ``module`` for ONE image (batch dimension removed)."""
    per_image_out = math.prod(out_shape[1:])
    if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        # each input element is scattered through out_channels/groups kernels
        if inp_shape is None:
            return 0
        return math.prod(inp_shape[1:]) * module.out_channels // module.groups * math.prod(module.kernel_size)
    if isinstance(module, _CONVS):
        return per_image_out * module.in_channels // module.groups * math.prod(module.kernel_size)
    if isinstance(module, nn.Linear):
        return per_image_out * module.in_features
    return 0


def _function_macs(node: Any, out_shape: tuple[int, ...]) -> int:
    """MACs of a functional ``F.linear``/``F.conv2d`` call whose weight is another traced tensor."""
    if node.target not in (F.linear, F.conv1d, F.conv2d, F.conv3d) or len(node.args) < 2:
        return 0
    meta = getattr(node.args[1], "meta", {}).get("tensor_meta")
    if meta is None:
        return 0
    w = tuple(meta.shape)  # linear: (out, in); conv: (out, in/groups, *kernel)
    return math.prod(out_shape[1:]) * math.prod(w[1:])


def _row(name: str, kind: str, shape: tuple[int, ...], params: int, macs: int) -> dict[str, Any]:
    return {"name": name, "type": kind, "output_shape": list(shape), "params": params, "macs": macs}


def _trace_rows(model: nn.Module, x: torch.Tensor) -> list[dict[str, Any]]:
    import torch.fx as fx
    from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

    gm = fx.symbolic_trace(model)
    ShapeProp(gm).propagate(x)
    modules = dict(gm.named_modules())
    seen: set[int] = set()  # a module called twice (e.g. one shared pool) owns its parameters once
    rows = []
    for node in gm.graph.nodes:
        meta = node.meta.get("tensor_meta")
        if node.op not in ("call_module", "call_function", "call_method") or not isinstance(meta, TensorMetadata):
            continue  # inputs, outputs, constants and non-tensor results (sizes, tuples)
        shape = tuple(meta.shape)
        if node.op == "call_module":
            module = modules[node.target]
            params = 0 if id(module) in seen else sum(p.numel() for p in module.parameters())
            seen.add(id(module))
            src = node.args[0] if node.args else None
            src_meta = getattr(src, "meta", {}).get("tensor_meta")
            inp = tuple(src_meta.shape) if isinstance(src_meta, TensorMetadata) else None
            rows.append(_row(str(node.target), type(module).__name__, shape, params, _module_macs(module, inp, shape)))
        else:
            kind = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
            rows.append(_row(node.name, kind, shape, 0, _function_macs(node, shape)))
    return rows


def _hook_rows(model: nn.Module, x: torch.Tensor) -> list[dict[str, Any]]:
    """Fallback for models torch.fx cannot trace (data-dependent control flow): leaf modules only."""
    rows: list[dict[str, Any]] = []
    seen: set[int] = set()

    def hook(name: str):
        def record(module: nn.Module, args: tuple, out: Any) -> None:
            if not isinstance(out, torch.Tensor):
                return
            inp = tuple(args[0].shape) if args and isinstance(args[0], torch.Tensor) else None
            params = 0 if id(module) in seen else sum(p.numel() for p in module.parameters())
            seen.add(id(module))
            rows.append(
                _row(name, type(module).__name__, tuple(out.shape), params, _module_macs(module, inp, tuple(out.shape)))
            )

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if not list(m.children())]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return rows


@torch.no_grad()
def summarize(model: nn.Module, input_shape: tuple[int, int, int], batch: int = 1, name: str = "") -> dict[str, Any]:
    """Per-layer output shapes for a (batch, C, H, W) input, parameters per layer and in total, MACs per image."""
    if batch < 1:
        raise ConfigError(f"--batch must be at least 1, got {batch}")
    model = model.eval()  # BatchNorm with batch 1 and dropout need eval mode
    x = torch.zeros(batch, *input_shape)  # (N, C, H, W) float32
    try:
        model(x)
    except RuntimeError as exc:
        first = first_line(exc)
        raise ConfigError(
            f"{name or type(model).__name__} cannot take an input of {list(x.shape)}: {first}",
            "give the size it is built for with --input-size H, HxW or CxHxW",
        ) from None
    try:
        rows, method = _trace_rows(model, x), "torch.fx"
    except Exception:  # noqa: BLE001 - torch.fx raises many kinds (TraceError, TypeError, ...) on dynamic code
        rows, method = _hook_rows(model, x), "hooks"
    total = sum(p.numel() for p in model.parameters())
    return {
        "name": name or type(model).__name__,
        "input_shape": [batch, *input_shape],
        "layers": rows,
        "total_params": total,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "param_bytes_fp32": 4 * total,
        "total_macs": sum(r["macs"] for r in rows),
        "method": method,
    }


def parse_input_size(text: str | None, default: tuple[int, int, int]) -> tuple[int, int, int]:
    """``"32"`` -> (C, 32, 32), ``"24x32"`` -> (C, 24, 32), ``"3x32x32"`` -> (3, 32, 32); C from ``default``."""
    if not text:
        return default
    dims = parse_dims(text, "--input-size", (1, 2, 3))
    if len(dims) == 1:
        dims = dims * 2
    if len(dims) == 2:
        dims = [default[0], *dims]
    return (dims[0], dims[1], dims[2])


def summarize_target(
    target: str, input_size: str | None = None, batch: int = 1, arch: str | None = None, num_classes: int | None = None
) -> dict[str, Any]:
    """Summary of a registered architecture name, a cnnx checkpoint / run folder, or a bare state_dict + ``arch``."""
    from cnnx.train import checkpoint as ckpt
    from cnnx.train.models import ARCHS, build_model, get_arch, num_classes_of

    if num_classes is not None and num_classes < 1:  # 0 would otherwise read as "not given"
        raise ConfigError(f"--classes must be at least 1, got {num_classes}")
    if target in ARCHS and not Path(target).exists():
        a = get_arch(target)
        shape = parse_input_size(input_size, a.input_shape)
        model = build_model(target, num_classes or 10, shape)
        result = summarize(model, shape, batch, target)
        result["source"] = "architecture"
        return result
    if not Path(target).exists():
        raise ConfigError(
            f"{target!r} is neither a registered architecture nor a file",
            "see `cnnx train --list-archs`, or give a run folder or checkpoint",
        )
    data = ckpt.load_raw(Path(target))
    if isinstance(data, dict) and data.get("format") == ckpt.FORMAT:
        spec = data["spec"]
        name = arch or spec["arch"]
        state = data["model"]
        default_shape = tuple(spec["input_shape"])
        classes = len(spec["classes"])
    else:
        state = ckpt.unwrap_state_dict(data, Path(target))  # CheckpointError for anything else
        if arch is None:
            raise CheckpointError(f"{target} is a bare state_dict", "say which network it is for with --arch NAME")
        name, default_shape = arch, get_arch(arch).input_shape
        classes = num_classes or num_classes_of(state)
    shape = parse_input_size(input_size, default_shape)
    model = build_model(name, num_classes or classes, default_shape)  # weights fit the trained shape
    ckpt.load_weights(
        model,
        state,
        f"the weights in {target} do not fit {name}",
        "give the architecture they were trained with: --arch NAME",
    )
    result = summarize(model, shape, batch, name)
    result["source"] = str(target)
    return result


def format_summary(s: dict[str, Any]) -> str:
    """A table like the seed notes' ``layer output shape`` loop, with parameter and MAC columns."""
    rows = s["layers"]
    name_w = max([len("layer"), *(len(r["name"]) for r in rows)])
    type_w = max([len("type"), *(len(r["type"]) for r in rows)])
    shape_w = max([len("output shape"), *(len(str(r["output_shape"])) for r in rows)])
    lines = [
        f"{s['name']}: input {s['input_shape']}",
        f"{'layer':<{name_w}}  {'type':<{type_w}}  {'output shape':<{shape_w}}  {'params':>10}  {'MACs/image':>13}",
    ]
    for r in rows:
        lines.append(
            f"{r['name']:<{name_w}}  {r['type']:<{type_w}}  {str(r['output_shape']):<{shape_w}}  "
            f"{r['params']:>10,}  {r['macs']:>13,}"
        )
    lines.append(
        f"total: {s['total_params']:,} parameters ({s['trainable_params']:,} trainable, "
        f"{s['param_bytes_fp32'] / 1024:,.1f} KiB as float32), {s['total_macs']:,} MACs per image"
    )
    return "\n".join(lines)
