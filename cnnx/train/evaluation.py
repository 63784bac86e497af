"""The test-set pass: mean loss, accuracy and every prediction, in eval mode, float32.

In a distributed run each rank evaluates every N-th test image and the answers are
put back together, so every rank holds the whole result (rank 0's BatchNorm running
statistics are broadcast first: the model evaluated is the model saved).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnx.train import distributed as ddp
from cnnx.train.data import Split
from cnnx.train.steps import Normalizer


def evaluate_shared(
    model: nn.Module,
    split: Split,
    norm: Normalizer,
    batch_size: int,
    device: torch.device,
    memory_format: torch.memory_format,
    world: ddp.World,
) -> tuple[float, float, torch.Tensor]:
    """``evaluate`` with the test images shared out over the ranks; every rank gets the whole answer."""
    if not world.enabled:
        return evaluate(model, split, norm, batch_size, device, memory_format)
    ddp.sync_buffers(world, model)
    part = world.part(len(split))
    shard = Split(split.x[part], split.y[part])
    loss, pred = 0.0, torch.empty(0, dtype=torch.int64)  # a shard may be empty: fewer test images than ranks
    if len(shard):
        loss, _, pred = evaluate(model, shard, norm, batch_size, device, memory_format)
    loss_sum = ddp.total(world, torch.tensor(loss * len(shard), device=device, dtype=torch.float64))
    pred = ddp.interleave(world, pred.to(device), len(split)).cpu()
    return loss_sum.item() / len(split), (pred == split.y).float().mean().item(), pred


@torch.no_grad()
def evaluate(
    model: nn.Module,
    split: Split,
    norm: Normalizer,
    batch_size: int,
    device: torch.device,
    memory_format: torch.memory_format,
) -> tuple[float, float, torch.Tensor]:
    """Mean loss, accuracy in [0, 1] and predicted class per image, in eval mode."""
    model.eval()
    loss_sum, preds = 0.0, []
    for i in range(0, len(split), batch_size):
        x = norm(split.x[i : i + batch_size].to(device)).contiguous(memory_format=memory_format)
        y = split.y[i : i + batch_size].to(device)
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        preds.append(logits.argmax(1).cpu())
    pred = torch.cat(preds)
    return loss_sum / len(split), (pred == split.y).float().mean().item(), pred
