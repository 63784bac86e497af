"""Helpers for tests that follow a model to the edge: the torch reference and `cnnx infer` as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from tests.conftest import run_cli


def torch_probs(checkpoint: Path, x_uint8: torch.Tensor) -> np.ndarray:
    """Softmax of a cnnx checkpoint's model on uint8 (N, C, H, W) pixels, normalised with its spec."""
    from cnnx.train.models import build_model

    state = torch.load(checkpoint, weights_only=True)
    spec = state["spec"]
    model = build_model(spec["arch"], len(spec["classes"]), tuple(spec["input_shape"])).eval()
    model.load_state_dict(state["model"])
    mean = torch.tensor(spec["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(spec["std"]).view(1, -1, 1, 1)
    with torch.no_grad():
        return torch.softmax(model((x_uint8.float() / 255 - mean) / std), 1).numpy()


def infer_json(model: Path, *images: Path) -> list[dict]:
    """`cnnx infer IMAGES -m MODEL --json --top-k 3`, one dict per image."""
    proc = run_cli("infer", *map(str, images), "-m", str(model), "--json", "--top-k", "3", check=True)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
