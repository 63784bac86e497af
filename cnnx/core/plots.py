"""Every picture cnnx draws, headless: learning curves and labelled image grids (matplotlib),
the confusion matrix and the misclassified images (Pillow alone, so ``cnnx eval`` draws them on a
device without matplotlib, and a training run draws the same confusion matrix).

numpy at import time; matplotlib and Pillow are imported when a picture is drawn. The
matplotlib figures are built on its object API with the Agg canvas, never ``pyplot``: no
display is needed, no global state is touched, and importing is a third cheaper. Every file
is written atomically (temp file, then rename).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnx.core.errors import ConfigError
from cnnx.core.fileio import atomic_write

DPI = 100  # figure inches * DPI = pixels


def figure(width_in: float, height_in: float) -> Any:
    """A matplotlib Figure on the Agg canvas (headless: no pyplot, no display), ``width_in * DPI`` pixels wide."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError(
            "drawing plots needs matplotlib, which is not installed",
            'pip install matplotlib (it comes with "cnnx[train]")',
        ) from None
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
    for key, label in (("train_loss", "train"), ("holdout_loss", "held out"), ("test_loss", "test")):
        if all(key in m for m in metrics):
            loss_ax.plot(epochs, [m[key] for m in metrics], label=label, **style)
    for key, label in (("train_accuracy", "train"), ("holdout_accuracy", "held out"), ("test_accuracy", "test")):
        if all(key in m for m in metrics):
            acc_ax.plot(epochs, [100 * m[key] for m in metrics], label=label, **style)
    if all("holdout_accuracy" in m for m in metrics):  # best.pt is chosen by it (cnnx.train.run.Run.best_epoch)
        best = max(metrics, key=lambda m: m["holdout_accuracy"])
        chosen = f"best held-out accuracy {100 * best['holdout_accuracy']:.2f}% (epoch {best['epoch']}), "
        acc_ax.set_title(f"{chosen}test {100 * best['test_accuracy']:.2f}%", fontsize=9)
    else:
        best = max(metrics, key=lambda m: m["test_accuracy"])
        acc_ax.set_title(f"best test accuracy {100 * best['test_accuracy']:.2f}% (epoch {best['epoch']})", fontsize=9)
    losses = [m[k] for m in metrics for k in ("train_loss", "holdout_loss", "test_loss") if m.get(k, 0) > 0]
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


def grid_layout(n: int, h: int, w: int, ncols: int) -> tuple[int, int, int]:
    """(rows, columns, upscale) of a grid: cells of at least 80 screen pixels so captions fit under them."""
    ncols = max(1, min(ncols, n))
    return -(-n // ncols), ncols, max(1, -(-80 // max(h, w)))


def save_grid(
    images: np.ndarray,
    labels: Sequence[str],
    path: Path,
    ncols: int = 8,
    title: str = "",
    colors: Sequence[str] | None = None,
) -> Path:
    """A labelled grid of uint8 (N, C, H, W) images, one caption under each ("cat", "true 3 / pred 5").

    The images are tiled the way ``torchvision.utils.make_grid`` tiles them (2-pixel
    padding, row by row), enlarged by a whole factor with no smoothing, with a
    caption strip under every row; one ``imshow`` draws it all, so 100 images cost
    no more than one.
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3) or len(images) == 0 or images.dtype != np.uint8:
        raise ConfigError(
            f"cannot draw images of shape {images.shape} ({images.dtype})", "give uint8 (N, 1 or 3, H, W)"
        )
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
        ax.text(
            x,
            y + caption / 2,
            label,
            ha="center",
            va="center",
            fontsize=7,
            clip_on=True,
            color=colors[k] if colors else "black",
        )
    if title:
        ax.text(canvas.shape[1] / 2, top / 2, title, ha="center", va="center", fontsize=9)
    return save_png(fig, path)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; raises ConfigError when the file is not a PNG."""
    head = Path(path).read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ConfigError(f"{path} is not a PNG file")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


# ---------------------------------------------------------------- Pillow pictures (no matplotlib)

CELL = 44  # pixels per matrix cell
MARGIN = 70  # room for the class names and axis titles


def _text_size(draw: Any, text: str, font: Any) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def draw_confusion(confusion: np.ndarray, classes: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Write a (K, K) confusion matrix as a PNG: rows = true class, columns = predicted.

    Each cell is shaded by its share of the row (white = 0, dark blue = the whole row)
    and carries its count; the PNG is written to a temporary name and renamed.
    """
    from PIL import Image, ImageDraw, ImageFont

    path = Path(path)
    k = len(classes)
    size = MARGIN + k * CELL + 20
    img = Image.new("RGB", (size, size + 24), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    rows = confusion.sum(axis=1, keepdims=True).astype(np.float64)
    share = np.divide(confusion, rows, out=np.zeros(confusion.shape), where=rows > 0)  # (K, K) in [0, 1]
    top = MARGIN + 24
    if title:
        draw.text((10, 6), title[:80], fill="black", font=font)
    draw.text((MARGIN, top - 40), "predicted", fill="black", font=font)
    draw.text((6, top - 40), "true", fill="black", font=font)
    for i in range(k):
        name = classes[i][:6]
        w, h = _text_size(draw, name, font)
        draw.text((MARGIN + i * CELL + (CELL - w) // 2, top - 20), name, fill="black", font=font)
        draw.text((MARGIN - 10 - w, top + i * CELL + (CELL - h) // 2), name, fill="black", font=font)
        for j in range(k):
            s = float(share[i, j])
            # white -> (30, 70, 160): an easy blue that keeps black text readable up to ~60 %
            fill = tuple(int(round(255 + (c - 255) * s)) for c in (30, 70, 160))
            x0, y0 = MARGIN + j * CELL, top + i * CELL
            draw.rectangle((x0, y0, x0 + CELL, y0 + CELL), fill=fill, outline=(200, 200, 200))
            count = str(int(confusion[i, j]))
            tw, th = _text_size(draw, count, font)
            draw.text(
                (x0 + (CELL - tw) // 2, y0 + (CELL - th) // 2), count, fill="white" if s > 0.6 else "black", font=font
            )
    try:
        return atomic_write(path, lambda f: img.save(f, format="PNG"))
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc}", "choose a writable --confusion path") from None


TILE_SCALE = 3  # 28x28 digits drawn at 84x84: big enough to read the ink
CAPTION = 26  # pixels under each tile for "true 7 / said 2 0.93"


def draw_errors(
    mistakes: Sequence[Any], classes: Sequence[str], path: str | Path, title: str = "", columns: int = 10
) -> Path:
    """Write misclassified images as a labelled grid PNG, one tile per ``Mistake``, in the order given.

    Each tile is exactly what the model saw (before normalisation), enlarged with
    nearest-neighbour sampling so pixels stay pixels; under it the true class in black and
    the predicted class with its probability in red.
    """
    from PIL import Image, ImageDraw, ImageFont

    path = Path(path)
    if not mistakes:
        raise ConfigError(f"no misclassified images to draw into {path}", "every image was classified correctly")
    c, h, w = mistakes[0].pixels.shape
    tw, th = max(w * TILE_SCALE, 84), max(h * TILE_SCALE, 84)  # larger inputs are drawn at least as large
    cols = max(1, min(columns, len(mistakes)))
    rows = -(-len(mistakes) // cols)
    head = 24 if title else 4
    img = Image.new("RGB", (cols * (tw + 8) + 8, head + rows * (th + CAPTION + 8)), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    if title:
        draw.text((8, 6), title[:120], fill="black", font=font)
    for n, m in enumerate(mistakes):
        x, y = 8 + (n % cols) * (tw + 8), head + (n // cols) * (th + CAPTION + 8)
        hwc = np.transpose(m.pixels, (1, 2, 0))  # (H, W, C) uint8
        tile = Image.fromarray(hwc[:, :, 0] if c == 1 else hwc).convert("RGB")
        img.paste(tile.resize((tw, th), Image.Resampling.NEAREST), (x, y))
        draw.text((x, y + th + 2), f"true {m.true[:10]}", fill="black", font=font)
        draw.text((x, y + th + 13), f"said {m.predicted[:10]} {m.probability:.2f}", fill=(200, 0, 0), font=font)
    try:
        return atomic_write(path, lambda f: img.save(f, format="PNG"))
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc}", "choose a writable --errors path") from None


def draw_reliability(
    curves: dict[str, Sequence[dict[str, float]]], path: str | Path, title: str = "", side: int = 360
) -> Path:
    """Write a reliability diagram PNG: per confidence bin, accuracy (bar) against confidence.

    ``curves``: name -> ``cnnx.core.calibration.reliability`` rows, e.g. {"before": ..., "after": ...},
    drawn side by side; a calibrated model's bars end on the diagonal. Pillow alone.
    """
    from PIL import Image, ImageDraw, ImageFont

    path = Path(path)
    pad, head = 40, 26 if title else 6
    img = Image.new("RGB", (len(curves) * (side + pad) + pad, head + side + 2 * pad), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    if title:
        draw.text((pad, 6), title[:120], fill="black", font=font)
    for n, (name, rows) in enumerate(curves.items()):
        x0, y0 = pad + n * (side + pad), head + pad  # top-left of the plot square
        total = sum(r["count"] for r in rows) or 1
        gap = sum(r["count"] * abs(r["accuracy"] - r["confidence"]) for r in rows) / total
        draw.text((x0, y0 - 16), f"{name}: ECE {100 * gap:.2f}%", fill="black", font=font)
        for r in rows:
            if not r["count"]:
                continue
            left, right = x0 + r["lo"] * side, x0 + r["hi"] * side
            draw.rectangle(
                (left, y0 + (1 - r["accuracy"]) * side, right, y0 + side), fill=(30, 70, 160), outline="white"
            )
            y = y0 + (1 - r["confidence"]) * side  # the bin's mean confidence, where a calibrated bar would end
            draw.line((left, y, right, y), fill=(200, 0, 0), width=2)
        draw.rectangle((x0, y0, x0 + side, y0 + side), outline="black")
        draw.line((x0, y0 + side, x0 + side, y0), fill=(150, 150, 150))  # the diagonal: accuracy = confidence
        draw.text((x0, y0 + side + 4), "confidence 0 .. 1 (red: bin mean)", fill="black", font=font)
        draw.text((x0 - 34, y0), "acc", fill="black", font=font)
    try:
        return atomic_write(path, lambda f: img.save(f, format="PNG"))
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc}", "choose a writable --reliability path") from None
