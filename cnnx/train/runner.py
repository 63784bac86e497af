"""A torch module behind cnnx's ``run`` interface, and TorchScript archives read and written quietly.

``TorchRunner(module).run(x)``: float32 (N, C, H, W) normalised numpy in, (N, K) logits numpy
out, in eval mode without autograd. It is the one way cnnx runs a torch model on numpy batches:
export's reference model and its TorchScript file loaded back, ``cnnx eval`` on a checkpoint or a
TorchScript file, and ``cnnx bench``'s eager and TorchScript processes.

torch 2.9 and later warn that TorchScript is deprecated on every ``torch.jit`` call. A user who
asked for a TorchScript file has chosen it, and the parity gate, not a warning, says whether it
is right, so ``load_torchscript`` and ``save_torchscript`` keep that notice off the terminal.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np
import torch
from torch import nn


class TorchRunner:
    """A torch module (eval mode, CPU) as a function of numpy batches."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module.eval()

    def run(self, x: np.ndarray) -> np.ndarray:
        """(N, C, H, W) float32 normalised -> the module's output, (N, K) logits, as numpy."""
        with torch.inference_mode():
            return self.module(torch.from_numpy(np.ascontiguousarray(x, np.float32))).numpy()

    __call__ = run


@contextmanager
def quiet_torchscript() -> Iterator[None]:
    """torch.jit's deprecation notices (FutureWarning, DeprecationWarning) silenced for the block."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def load_torchscript(path: str | Path, extra_file: str) -> tuple[torch.jit.ScriptModule, str]:
    """``torch.jit.load`` onto the CPU: (module, the text of its extra file ``extra_file``, "" when absent)."""
    files = {extra_file: ""}
    with quiet_torchscript():
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=files)
    text = files[extra_file]
    return module, text.decode() if isinstance(text, bytes) else text


def save_torchscript(module: torch.jit.ScriptModule, f: IO[bytes], extra: dict[str, str]) -> None:
    """``torch.jit.save`` of ``module`` into the open file ``f``, with ``extra`` as its extra files."""
    with quiet_torchscript():
        torch.jit.save(module, f, _extra_files=extra)
