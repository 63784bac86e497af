"""The random state in every checkpoint: what makes a resumed run draw what an uninterrupted one would."""

from __future__ import annotations

from typing import Any

import torch

from cnnx.train import distributed as ddp


def capture(gen: torch.Generator, device: torch.device, world: ddp.World) -> dict[str, Any]:
    """The generators a run draws from, as a checkpoint keeps them: torch's (init, dropout), the
    data generator (order, augmentation), CUDA's; in a distributed run every rank's too (collective)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "data": gen.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    if world.enabled:  # dropout draws differ per rank: keep every rank's generators
        state["ranks"] = ddp.gather(world, {k: v for k, v in state.items() if k != "data"})
    return state


def restore(state: dict[str, Any], gen: torch.Generator, device: torch.device, world: ddp.World) -> None:
    """Put back what ``capture`` kept; each rank takes its own generators when the world has the same size."""
    ranks = state.get("ranks")
    if world.enabled and ranks and len(ranks) == world.size:
        state = {**state, **ranks[world.rank]}
    torch.set_rng_state(state["torch"])
    gen.set_state(state["data"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])
