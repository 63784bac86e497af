"""Checkpoints: complete, atomic on write, safe on read.

A cnnx checkpoint is a plain dict of tensors and builtins, so it loads with
``torch.load(weights_only=True)``: no pickled classes, no code run on load.

    {"format": "cnnx-checkpoint", "format_version": 1,
     "model": state_dict, "optimizer": ..., "scheduler": ...,
     "rng": {"torch": ByteTensor, "data": ByteTensor, "cuda": [ByteTensor]},
     "epoch": epochs completed, "config": TrainConfig as dict,
     "metrics": [per-epoch records], "best_accuracy": float,
     "spec": ModelSpec as dict}
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import Any

import torch

from cnnx.errors import CheckpointError
from cnnx.fileio import atomic_write

FORMAT = "cnnx-checkpoint"
FORMAT_VERSION = 1
LAST, BEST = "last.pt", "best.pt"


def save_checkpoint(payload: dict[str, Any], path: Path) -> Path:
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    return atomic_write(path, lambda f: torch.save(payload, f))


def resolve_checkpoint(path: Path) -> Path:
    """A run folder means its ``last.pt``; a file means itself."""
    path = Path(path)
    if path.is_dir():
        path = path / LAST
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}", "give a run folder or a .pt file")
    return path


def load_raw(path: Path) -> Any:
    """``torch.load`` with ``weights_only=True``, on the CPU, with readable errors."""
    path = resolve_checkpoint(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise CheckpointError(
                f"{path} holds pickled Python objects (a whole model saved with torch.save(model)); "
                "loading it would run code from the file, so cnnx refuses",
                "in the code that made it, re-save with torch.save(model.state_dict(), PATH) "
                "and export that with --arch NAME",
            ) from None
        raise CheckpointError(f"{path} is not a readable checkpoint: {exc}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path} is corrupt or truncated: {first}") from None


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a full cnnx checkpoint (for resuming and export)."""
    data = load_raw(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(
            f"{resolve_checkpoint(path)} is not a cnnx checkpoint",
            "a bare state_dict can be exported with --arch NAME",
        )
    return data


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
