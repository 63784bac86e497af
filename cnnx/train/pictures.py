"""The pictures a run leaves in its folder at the end: ``curves.png`` and ``confusion.png``.

Drawn by ``cnnx.core.plots`` with Pillow alone: a run needs no matplotlib for them, and
importing it would cost more than drawing both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cnnx.core.contract import CONFUSION, CURVES


def draw_pictures(
    run_dir: Path,
    metrics: list[dict[str, Any]],
    y_true: torch.Tensor,
    y_pred: torch.Tensor,
    classes: list[str],
    title: str,
) -> dict[str, str]:
    """curves.png (every epoch's record) and confusion.png (``y_pred``: the last epoch's (N,) test
    predictions) in ``run_dir``: {"curves": path, "confusion": path}."""
    from cnnx.core import plots

    curves = plots.save_curves(metrics, run_dir / CURVES, title)
    epoch = metrics[-1]["epoch"]
    acc = 100 * float((y_true == y_pred).float().mean())
    counts = plots.confusion_matrix(y_true.numpy(), y_pred.numpy(), len(classes))
    confusion = plots.draw_confusion(
        counts, classes, run_dir / CONFUSION, f"{title}: test set after epoch {epoch}, {acc:.2f}% correct"
    )
    return {"curves": str(curves), "confusion": str(confusion)}
