"""A confusion-matrix picture drawn with Pillow alone, so it works on a device without matplotlib."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cnnx.errors import ConfigError
from cnnx.fileio import atomic_write

CELL = 44  # pixels per matrix cell
MARGIN = 70  # room for the class names and axis titles


def _text_size(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def draw_confusion(confusion: np.ndarray, classes: list[str], path: str | Path, title: str = "") -> Path:
    """Write a (K, K) confusion matrix as a PNG: rows = true class, columns = predicted.

    Each cell is shaded by its share of the row (white = 0, dark blue = the whole row)
    and carries its count; the PNG is written to a temporary name and renamed.
    """
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
            draw.text((x0 + (CELL - tw) // 2, y0 + (CELL - th) // 2), count,
                      fill="white" if s > 0.6 else "black", font=font)
    try:
        return atomic_write(path, lambda f: img.save(f, format="PNG"))
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc}", "choose a writable --confusion path") from None


TILE_SCALE = 3  # 28x28 digits drawn at 84x84: big enough to read the ink
CAPTION = 26  # pixels under each tile for "true 7 / said 2 0.93"


def draw_errors(mistakes: list, classes: list[str], path: str | Path, title: str = "", columns: int = 10) -> Path:
    """Write misclassified images as a labelled grid PNG, one tile per ``Mistake``, in the order given.

    Each tile is exactly what the model saw (before normalisation), enlarged with
    nearest-neighbour sampling so pixels stay pixels; under it the true class in black and
    the predicted class with its probability in red.
    """
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
