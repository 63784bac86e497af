"""Pictures of a run, drawn headless with matplotlib: learning curves, confusion matrix, labelled image grids.

numpy and matplotlib only (no torch), imported when a picture is drawn. The
figures are built on matplotlib's object API with the Agg canvas, never
``pyplot``: no display is needed, no global state is touched, and importing is
a third cheaper. Every file is written atomically (temp file, then rename).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cnnx.errors import ConfigError
from cnnx.fileio import atomic_write

DPI = 100  # figure inches * DPI = pixels


def figure(width_in: float, height_in: float) -> Any:
    """A matplotlib Figure on the Agg canvas (headless: no pyplot, no display), ``width_in * DPI`` pixels wide."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError("drawing plots needs matplotlib, which is not installed",
                          'pip install matplotlib (it comes with "cnnx[train]")') from None
    fig = Figure(figsize=(width_in, height_in), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Any, path: Path) -> Path:
    """PNG of exactly figsize * DPI pixels, written to a temp file beside ``path`` and renamed over it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)  # no bbox_inches="tight": the size stays predictable
    return atomic_write(Path(path), lambda f: f.write(buf.getvalue()))


def save_curves(metrics: Sequence[dict[str, Any]], path: Path, title: str = "") -> Path:
    """Loss and accuracy per epoch, train and test, side by side (1000x400 pixels)."""
    if not metrics:
        raise ConfigError("no finished epoch to plot")
    epochs = [m["epoch"] for m in metrics]
    fig = figure(10, 4)
    loss_ax, acc_ax = fig.subplots(1, 2)
    style = {"marker": "o", "markersize": 3}  # a one-epoch run still shows its point
    for key, label in (("train_loss", "train"), ("test_loss", "test")):
        if all(key in m for m in metrics):
            loss_ax.plot(epochs, [m[key] for m in metrics], label=label, **style)
    for key, label in (("train_accuracy", "train"), ("test_accuracy", "test")):
        if all(key in m for m in metrics):
            acc_ax.plot(epochs, [100 * m[key] for m in metrics], label=label, **style)
    best = max(metrics, key=lambda m: m["test_accuracy"])
    acc_ax.set_title(f"best test accuracy {100 * best['test_accuracy']:.2f}% (epoch {best['epoch']})", fontsize=9)
    losses = [m[k] for m in metrics for k in ("train_loss", "test_loss") if m.get(k, 0) > 0]
    if losses and max(losses) > 10 * min(losses):  # e.g. a first epoch's test loss 50x the last: log scale
        loss_ax.set_yscale("log")
    for ax, name in ((loss_ax, "loss (cross-entropy)"), (acc_ax, "accuracy (%)")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title)
    # fixed margins rather than tight_layout(), which costs one more full draw
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.88 if title else 0.95, wspace=0.25)
    return save_png(fig, path)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) int64 counts; row = true class, column = predicted class."""
    idx = np.asarray(y_true, dtype=np.int64) * num_classes + np.asarray(y_pred, dtype=np.int64)
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def confusion_size(num_classes: int) -> int:
    """Side of confusion.png in pixels: room for labels, capped for hundreds of classes."""
    return int(DPI * min(max(5.0, 0.5 * num_classes + 2.0), 20.0))


def save_confusion(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str], path: Path,
                   title: str = "") -> Path:
    """Counts per (true, predicted) pair, coloured by the fraction of each true class (square PNG)."""
    n = len(classes)
    cm = confusion_matrix(y_true, y_pred, n)
    rows = cm.sum(axis=1, keepdims=True)
    frac = cm / np.maximum(rows, 1)  # per-class recall on the diagonal
    side = confusion_size(n) / DPI
    fig = figure(side, side)
    ax = fig.subplots()
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    if n <= 30:  # beyond that the numbers do not fit in a cell
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if frac[i, j] > 0.5 else "black")
    if n <= 60:
        names = [c if len(c) <= 12 else c[:11] + "…" for c in classes]
        ax.set_xticks(range(n), names, rotation=90 if max(map(len, names)) > 3 else 0, fontsize=8)
        ax.set_yticks(range(n), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = np.trace(cm) / max(cm.sum(), 1)
    ax.set_title(title or f"confusion matrix: {cm.sum():,} test images, {100 * accuracy:.2f}% correct", fontsize=10)
    # room for labels of up to 12 characters at 8 points (~75 pixels), as fractions of the side
    px = side * DPI
    margin = (110 if n <= 60 else 50) / px
    fig.subplots_adjust(left=margin, bottom=margin, right=1 - 20 / px, top=1 - 35 / px)
    return save_png(fig, path)


def grid_layout(n: int, h: int, w: int, ncols: int) -> tuple[int, int, int]:
    """(rows, columns, upscale) of a grid: cells of at least 80 screen pixels so captions fit under them."""
    ncols = max(1, min(ncols, n))
    return -(-n // ncols), ncols, max(1, -(-80 // max(h, w)))


def save_grid(images: np.ndarray, labels: Sequence[str], path: Path, ncols: int = 8, title: str = "",
              colors: Sequence[str] | None = None) -> Path:
    """A labelled grid of uint8 (N, C, H, W) images, one caption under each ("cat", "true 3 / pred 5").

    The images are tiled the way ``torchvision.utils.make_grid`` tiles them (2-pixel
    padding, row by row), enlarged by a whole factor with no smoothing, with a
    caption strip under every row; one ``imshow`` draws it all, so 100 images cost
    no more than one.
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3) or len(images) == 0 or images.dtype != np.uint8:
        raise ConfigError(f"cannot draw images of shape {images.shape} ({images.dtype})",
                          "give uint8 (N, 1 or 3, H, W)")
    n, c, h, w = images.shape
    rows, cols, up = grid_layout(n, h, w, ncols)
    pad, caption = 2 * up, 16  # screen pixels
    cell_h, cell_w = h * up + pad + caption, w * up + pad
    top = 24 if title else 0
    canvas = np.full((top + rows * cell_h + pad, cols * cell_w + pad, 3), 255, np.uint8)  # (H, W, RGB) white
    big = images.repeat(up, axis=2).repeat(up, axis=3).transpose(0, 2, 3, 1)  # (N, h*up, w*up, C)
    for k in range(n):
        y, x = top + (k // cols) * cell_h + pad, (k % cols) * cell_w + pad
        canvas[y : y + h * up, x : x + w * up] = big[k]  # a 1-channel image broadcasts to grey RGB
    fig = figure(canvas.shape[1] / DPI, canvas.shape[0] / DPI)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(canvas, interpolation="nearest")
    ax.axis("off")
    for k, label in enumerate(labels[:n]):
        y, x = top + (k // cols) * cell_h + pad + h * up, (k % cols) * cell_w + pad + w * up / 2
        ax.text(x, y + caption / 2, label, ha="center", va="center", fontsize=7, clip_on=True,
                color=colors[k] if colors else "black")
    if title:
        ax.text(canvas.shape[1] / 2, top / 2, title, ha="center", va="center", fontsize=9)
    return save_png(fig, path)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; raises ConfigError when the file is not a PNG."""
    head = Path(path).read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ConfigError(f"{path} is not a PNG file")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
