"""Data-parallel training under ``torchrun``: one process per device, DDP, rank 0 writes.

``torchrun --nproc-per-node N -m cnnx train mnist`` starts N copies of the same
command; each reads its rank from the environment (RANK, WORLD_SIZE, LOCAL_RANK)
and joins one process group: NCCL on CUDA (one GPU per process, by local rank),
Gloo on the CPU.

How a step is shared. ``--batch-size`` is the global batch. Every rank draws the
same epoch permutation and the same augmentation from the run's data generator
(same seed, same draws), cuts the same global batch out of it, and keeps every
N-th image of it (``idx[rank::N]``): the partition DistributedSampler makes,
applied per global batch. The N shards of a step are exactly the images the
1-process run sees in that step, whatever the batch size, and the saved data
generator resumes them exactly. DistributedSampler itself is not used because it
reshuffles from ``seed + epoch``, apart from the run's generator, so a 2-process
run would see other batches than a 1-process one and resume could not restore them.

Each rank's loss is its share of the global mean (sum over its images / global
batch, times N, since DDP averages gradients over N), so the gradient is the
1-process gradient. BatchNorm keeps per-rank batch statistics (SyncBatchNorm
runs only on GPUs); its running statistics follow rank 0, which DDP broadcasts
before every forward and ``sync_buffers`` once more before each evaluation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from cnnx.core.errors import ConfigError, TrainingError


@dataclass(frozen=True)
class World:
    """This process's place in the job; ``World()`` is a plain single-process run."""

    rank: int = 0  # global rank, 0 .. size-1
    size: int = 1  # processes in the job (all nodes)
    local_rank: int = 0  # rank on this machine: picks the GPU

    @property
    def enabled(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, metrics, plots and progress."""
        return self.rank == 0

    def part(self, n: int) -> slice:
        """This rank's images of a global batch of ``n``: every ``size``-th one."""
        return slice(self.rank, n, self.size) if self.enabled else slice(None)


def world_from_env() -> World:
    """The World torchrun describes in the environment; single process when it describes none."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise ConfigError(
            f"WORLD_SIZE, RANK and LOCAL_RANK must be integers ({exc})", "start distributed runs with torchrun"
        ) from None
    return World(rank, size, local) if size > 1 else World()


def init(world: World, device: torch.device) -> torch.device:
    """Join the process group; return this rank's device: ``device``, or on CUDA its own GPU."""
    if not world.enabled:
        raise ValueError("init() is for distributed runs")
    use_cuda = device.type == "cuda"
    if use_cuda:
        if world.local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"local rank {world.local_rank} has no GPU: this machine has {torch.cuda.device_count()}",
                "start at most one process per GPU (--nproc-per-node)",
            )
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # a rank that dies leaves the others waiting at a collective: fail them after 30 minutes, not torch's hours
        dist.init_process_group(
            "nccl" if use_cuda else "gloo", timeout=timedelta(minutes=30), device_id=device if use_cuda else None
        )
    return device


def close(world: World, finished: bool) -> None:
    """Leave the process group. After a finished run the ranks leave together: Gloo aborts a
    process whose group is torn down while another rank is still connected. After an error
    there is no waiting for ranks that may never arrive."""
    if world.enabled and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """DDP around ``model`` (whose own state_dict is what checkpoints keep)."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def share(world: World, value: Any) -> Any:
    """Rank 0's ``value`` on every rank (a picklable object)."""
    if not world.enabled:
        return value
    box = [value if world.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(world: World, value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank."""
    if not world.enabled:
        return [value]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, value)
    return out


def total(world: World, t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over ranks (in place, returned)."""
    if world.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def sync_buffers(world: World, model: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank: after the last step each
    rank has updated its own copy, and evaluation and checkpoints must use rank 0's."""
    if world.enabled:
        for buf in model.buffers():
            dist.broadcast(buf, src=0)


def barrier(world: World) -> None:
    if world.enabled:
        dist.barrier()


def check_in_step(world: World, model: nn.Module, epoch: int) -> None:
    """Raise if the ranks' weights differ: DDP keeps them bit-identical, so any difference
    means a rank ran other steps (e.g. mismatched code or data on one node)."""
    if not world.enabled:
        return
    import hashlib

    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().cpu().numpy().tobytes())
    digests = gather(world, h.hexdigest())
    if len(set(digests)) > 1:
        raise TrainingError(
            f"after epoch {epoch} the {world.size} processes hold different weights "
            f"({', '.join(d[:8] for d in digests)})",
            "every node must run the same cnnx version on the same dataset files",
        )


def interleave(world: World, local: torch.Tensor, n: int) -> torch.Tensor:
    """Rebuild an (n,) tensor whose rank-r part is ``local`` = full[r::size], on every rank."""
    if not world.enabled:
        return local
    per = -(-n // world.size)  # the longest part; shorter parts are padded to it
    padded = torch.zeros(per, dtype=local.dtype, device=local.device)
    padded[: len(local)] = local
    parts = [torch.empty_like(padded) for _ in range(world.size)]
    dist.all_gather(parts, padded)
    full = torch.empty(n, dtype=local.dtype, device=local.device)
    for r, p in enumerate(parts):
        full[r :: world.size] = p[: len(range(r, n, world.size))]
    return full
