"""Every picture cnnx draws, headless. With Pillow alone: the learning curves, the confusion
matrix, the misclassified images, the reliability diagram and labelled image grids (``cnnx
samples``), so a training run draws its pictures without importing matplotlib (which takes
longer than drawing them) and ``cnnx eval`` draws on a device without it. With matplotlib:
``cnnx bench``'s chart.

numpy at import time; Pillow and matplotlib are imported when a picture is drawn. The
matplotlib figures are built on its object API with the Agg canvas, never ``pyplot``: no
display is needed, no global state is touched, and importing is a third cheaper. Every file
is written atomically (temp file, then rename).
"""

from __future__ import annotations

import functools
import importlib.util
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnx.core.errors import ConfigError
from cnnx.core.fileio import atomic_write, folder_problem

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


def save_png(fig: Any, path: Path, hint: str) -> Path:
    """PNG of exactly figsize * DPI pixels, written to a temp file beside ``path`` and renamed over it;
    a ConfigError with ``hint`` when it cannot be."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)  # no bbox_inches="tight": the size stays predictable
    return _write(Path(path), lambda f: f.write(buf.getvalue()), hint)


def _write(path: Path, write: Any, hint: str) -> Path:
    """``atomic_write``, its OSError turned into a one-line ConfigError with ``hint``."""
    try:
        return atomic_write(path, write)
    except OSError as exc:
        # the OS names the temp file it could not make; say what is wrong with the path asked for
        why = folder_problem(path.parent) or exc.strerror or str(exc)
        raise ConfigError(f"cannot write {path}: {why}", hint) from None


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) int64 counts; row = true class, column = predicted class."""
    idx = np.asarray(y_true, dtype=np.int64) * num_classes + np.asarray(y_pred, dtype=np.int64)
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def grid_layout(n: int, h: int, w: int, ncols: int) -> tuple[int, int, int]:
    """(rows, columns, upscale) of a grid: cells of at least 80 screen pixels so captions fit under them."""
    ncols = max(1, min(ncols, n))
    return -(-n // ncols), ncols, max(1, -(-80 // max(h, w)))


MAX_GRID_IMAGES = 400  # 20 rows of 20: more images are too small to look at, and only cost memory


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
    caption strip under every row. Drawn with Pillow into one RGB image: memory is
    the picture's own pixels, where a matplotlib figure with a text artist per image
    took over a megabyte per image.
    """
    from PIL import Image, ImageDraw

    if images.ndim != 4 or images.shape[1] not in (1, 3) or len(images) == 0 or images.dtype != np.uint8:
        raise ConfigError(
            f"cannot draw images of shape {images.shape} ({images.dtype})", "give uint8 (N, 1 or 3, H, W)"
        )
    n, c, h, w = images.shape
    if n > MAX_GRID_IMAGES:
        raise ConfigError(f"a grid holds at most {MAX_GRID_IMAGES} images, got {n:,}", "ask for fewer with --count")
    rows, cols, up = grid_layout(n, h, w, ncols)
    pad, caption = 2 * up, 16  # screen pixels
    cell_h, cell_w = h * up + pad + caption, w * up + pad
    top = 24 if title else 0
    canvas = np.full((top + rows * cell_h + pad, cols * cell_w + pad, 3), 255, np.uint8)  # (H, W, RGB) white
    big = images.repeat(up, axis=2).repeat(up, axis=3).transpose(0, 2, 3, 1)  # (N, h*up, w*up, C)
    for k in range(n):
        y, x = top + (k // cols) * cell_h + pad, (k % cols) * cell_w + pad
        canvas[y : y + h * up, x : x + w * up] = big[k]  # a 1-channel image broadcasts to grey RGB
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    for k, label in enumerate(labels[:n]):
        y, x = top + (k // cols) * cell_h + pad + h * up, (k % cols) * cell_w + pad + w * up / 2
        font = text_font(10, str(label))
        _centred_text(draw, (x, y + caption / 2), str(label), font, colors[k] if colors else "black")
    if title:
        _centred_text(draw, (canvas.shape[1] / 2, top / 2), title, text_font(13, title), "black")
    return write_png(img, path, "choose a writable --out path")


_WIDE_FONT = "DejaVuSans.ttf"  # Latin, Greek and Cyrillic, and on most Linux systems and in matplotlib


def text_font(size: float, text: str = "") -> Any:
    """The font to draw ``text`` in at ``size`` pixels: Pillow's default, which has glyphs for ASCII
    only ("étoile", a class name, came out with a box for its "é"), else DejaVu Sans where this
    machine has it (the system's fonts, or the copy matplotlib ships), else the default all the same."""
    return _font(float(size), not text.isascii())


@functools.lru_cache(maxsize=32)
def _font(size: float, beyond_ascii: bool) -> Any:
    from PIL import ImageFont

    if beyond_ascii:
        try:
            spec = importlib.util.find_spec("matplotlib")  # found, not imported
        except (ImportError, ValueError):  # a matplotlib blocked or half-installed
            spec = None
        bundled = [
            Path(d) / "mpl-data" / "fonts" / "ttf" / _WIDE_FONT
            for d in (spec and spec.submodule_search_locations) or []
        ]
        for candidate in [_WIDE_FONT, *map(str, bundled)]:  # a bare name: Pillow searches the system's font folders
            try:
                return ImageFont.truetype(candidate, size)
            except (OSError, ImportError):  # not there, or a Pillow built without FreeType
                continue
    return ImageFont.load_default(size=size)


def _centred_text(draw: Any, xy: tuple[float, float], text: str, font: Any, fill: Any) -> None:
    """``text`` centred on ``xy``, measured from the pixels it draws (bitmap fonts take no anchor)."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    draw.text((xy[0] - (left + right) / 2, xy[1] - (top + bottom) / 2), text, fill=fill, font=font)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; raises ConfigError when the file is not a PNG."""
    head = Path(path).read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ConfigError(f"{path} is not a PNG file")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


# ---------------------------------------------------------------- Pillow pictures (no matplotlib)


def _text_size(draw: Any, text: str, font: Any) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def write_png(img: Any, path: str | Path, hint: str) -> Path:
    """A Pillow image written atomically as a PNG; a ConfigError with ``hint`` when it cannot be."""
    return _write(Path(path), lambda f: img.save(f, format="PNG"), hint)


CURVES_SIZE = (1000, 400)  # pixels of curves.png
GRID_COLOUR = (230, 230, 230)
# matplotlib's first three colours, the ones curves.png always gave train, held out and test
SERIES = (
    ("train_loss", "train_accuracy", "train", (31, 119, 180)),
    ("holdout_loss", "holdout_accuracy", "held out", (255, 127, 14)),
    ("test_loss", "test_accuracy", "test", (44, 160, 44)),
)


def nice_ticks(lo: float, hi: float, most: int = 6, integer: bool = False) -> list[float]:
    """Round values inside [lo, hi] for an axis: a step of 1, 2, 2.5 or 5 times a power of ten
    (a whole number when ``integer``), at most about ``most`` steps."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / most
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))
    if integer:
        step = float(max(1, round(step)))
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def log_ticks(lo: float, hi: float) -> list[float]:
    """Powers of ten inside [lo, hi] (0 < lo < hi), with 2x and 5x between them when fewer than three fit."""
    ticks = [10.0**k for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)]
    if sum(lo <= t <= hi for t in ticks) < 3:
        ticks = [t * m for t in ticks for m in (1, 2, 5)]
    return [t for t in ticks if lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9)]


class _Canvas:
    """A white Pillow image addressed in final pixels but drawn ``scale`` times larger and reduced on
    saving, so lines come out smooth; text in Pillow's scalable default font (FreeType)."""

    def __init__(self, size: tuple[int, int]) -> None:
        from PIL import Image, ImageDraw, ImageFont

        self.size = size
        # without FreeType, Pillow's bitmap font cannot be enlarged: draw at the final size
        self.scale = 2 if isinstance(ImageFont.load_default(size=10), ImageFont.FreeTypeFont) else 1
        self.img = Image.new("RGB", (size[0] * self.scale, size[1] * self.scale), "white")
        self.draw = ImageDraw.Draw(self.img)

    def font(self, px: float, text: str = "") -> Any:
        return text_font(px * self.scale, text)

    def text_size(self, text: str, px: float) -> tuple[float, float]:
        w, h = _text_size(self.draw, text, self.font(px, text))
        return w / self.scale, h / self.scale

    def text(self, xy: tuple[float, float], text: str, px: float, align: str = "left", fill: Any = "black") -> None:
        """``text`` with its vertical middle at xy[1], and its left end, centre or right end at xy[0]."""
        s, font = self.scale, self.font(px, text)
        left, top, right, bottom = self.draw.textbbox((0, 0), text, font=font)  # drawn pixels
        x = xy[0] * s - {"left": 0, "center": (right - left) / 2, "right": right - left}[align]
        self.draw.text((x - left, xy[1] * s - (bottom - top) / 2 - top), text, fill=fill, font=font)

    def vertical_text(self, xy: tuple[float, float], text: str, px: float) -> None:
        """``text`` read bottom to top, centred on xy."""
        from PIL import Image, ImageDraw

        s, font = self.scale, self.font(px, text)
        left, top, right, bottom = self.draw.textbbox((0, 0), text, font=font)
        strip = Image.new("L", (int(right - left) + 4, int(bottom - top) + 4 * s), 0)
        ImageDraw.Draw(strip).text((2 - left, 2 * s - top), text, fill=255, font=font)
        turned = strip.rotate(90, expand=True)
        self.img.paste((0, 0, 0), (int(xy[0] * s - turned.width / 2), int(xy[1] * s - turned.height / 2)), turned)

    def line(self, points: Sequence[tuple[float, float]], fill: Any, width: float = 1.0) -> None:
        s = self.scale
        self.draw.line([(x * s, y * s) for x, y in points], fill=fill, width=max(1, round(width * s)), joint="curve")

    def dot(self, xy: tuple[float, float], radius: float, fill: Any) -> None:
        s, (x, y) = self.scale, xy
        self.draw.ellipse(((x - radius) * s, (y - radius) * s, (x + radius) * s, (y + radius) * s), fill=fill)

    def rectangle(self, box: tuple[float, float, float, float], outline: Any, fill: Any = None) -> None:
        s = self.scale
        self.draw.rectangle(tuple(v * s for v in box), outline=outline, fill=fill, width=max(1, s // 2 + s % 2))

    def save(self, path: Path) -> Path:
        from PIL import Image

        img = self.img.resize(self.size, Image.Resampling.LANCZOS) if self.scale > 1 else self.img
        return write_png(img, path, "choose a writable run folder")


def _panel(
    c: _Canvas,
    box: tuple[float, float, float, float],
    xs: Sequence[float],
    lines: Sequence[tuple[str, tuple[int, int, int], Sequence[float]]],
    ylabel: str,
    log: bool = False,
) -> None:
    """One plot in ``box`` (left, top, right, bottom): a line with dots per (label, colour, ys),
    grid, ticks, axis names, and a legend in the corner that hides the fewest points of the lines."""
    left, top, right, bottom = box

    def shown(y: float) -> bool:  # a diverged run's NaN or inf, or 0 on a log scale, leaves a gap
        return math.isfinite(y) and (y > 0 or not log)

    ys = [y for _, _, values in lines for y in values if shown(y)] or [1.0]
    lo, hi = min(ys), max(ys)
    if log:
        lo, hi = math.log10(lo), math.log10(hi)
    pad = (hi - lo) * 0.05 or (abs(hi) * 0.05 or 0.5)  # 5% of the range free above and below, as matplotlib
    lo, hi = lo - pad, hi + pad
    x_lo, x_hi = min(xs), max(xs)
    x_pad = (x_hi - x_lo) * 0.05 or 0.5
    x_lo, x_hi = x_lo - x_pad, x_hi + x_pad

    def px(x: float, y: float) -> tuple[float, float]:
        v = math.log10(y) if log else y
        return left + (x - x_lo) / (x_hi - x_lo) * (right - left), bottom - (v - lo) / (hi - lo) * (bottom - top)

    ticks = log_ticks(10**lo, 10**hi) if log else nice_ticks(lo, hi)
    for t in ticks:
        y = px(x_lo, t)[1]
        c.line(((left, y), (right, y)), GRID_COLOUR)
        c.line(((left - 4, y), (left, y)), "black")
        c.text((left - 7, y), f"{round(t, 10):g}", 11, align="right")
    for t in nice_ticks(x_lo, x_hi, most=10, integer=True):
        x = px(t, 10**lo if log else lo)[0]
        c.line(((x, top), (x, bottom)), GRID_COLOUR)
        c.line(((x, bottom), (x, bottom + 4)), "black")
        c.text((x, bottom + 13), f"{t:g}", 11, align="center")
    c.text(((left + right) / 2, bottom + 33), "epoch", 12, align="center")
    c.vertical_text((left - 58, (top + bottom) / 2), ylabel, 12)
    drawn: list[tuple[float, float]] = []  # the lines' points, and 20 along each segment
    for _, colour, values in lines:
        points = [px(x, y) for x, y in zip(xs, values, strict=True) if shown(y)]
        if len(points) > 1:
            c.line(points, colour, 1.5)
        for p in points:
            c.dot(p, 2.5, colour)
        for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
            drawn += [(x0 + (x1 - x0) * k / 20, y0 + (y1 - y0) * k / 20) for k in range(20)]
        drawn += points[-1:]
    c.rectangle(box, outline="black")
    # the legend: a short line and a dot before each name, in a framed white box, in the first of
    # matplotlib's corners (upper right, upper left, lower left, lower right) that hides the fewest points
    width = max(c.text_size(name, 11)[0] for name, _, _ in lines) + 44
    height = 18 * len(lines) + 8

    def hidden(spot: tuple[float, float]) -> int:
        return sum(spot[0] <= x <= spot[0] + width and spot[1] <= y <= spot[1] + height for x, y in drawn)

    free_x, free_y = right - left - width - 16, bottom - top - height - 16
    corners = [(left + 8 + fx * free_x, top + 8 + fy * free_y) for fx, fy in ((1, 0), (0, 0), (0, 1), (1, 1))]
    lx, ly = min(corners, key=hidden)
    c.rectangle((lx, ly, lx + width, ly + height), outline=(204, 204, 204), fill="white")
    for n, (name, colour, _) in enumerate(lines):
        y = ly + 13 + 18 * n
        c.line(((lx + 8, y), (lx + 30, y)), colour, 1.5)
        c.dot((lx + 19, y), 2.5, colour)
        c.text((lx + 36, y), name, 11)


def save_curves(metrics: Sequence[dict[str, Any]], path: Path, title: str = "") -> Path:
    """Loss and accuracy per epoch, train, held out and test, side by side (1000x400 pixels), Pillow alone.

    The loss is drawn on a log scale when its largest value is over ten times its smallest. The
    accuracy plot's title names the epoch with the best held-out accuracy (what best.pt is chosen
    by), or the best test accuracy when nothing was held out.
    """
    if not metrics:
        raise ConfigError("no finished epoch to plot")
    epochs = [float(m["epoch"]) for m in metrics]
    present = [s for s in SERIES if all(s[0] in m and s[1] in m for m in metrics)]
    losses = [(name, colour, [float(m[loss]) for m in metrics]) for loss, _, name, colour in present]
    accuracies = [(name, colour, [100 * float(m[acc]) for m in metrics]) for _, acc, name, colour in present]
    positive = [v for _, _, values in losses for v in values if 0 < v < math.inf]
    log = bool(positive) and max(positive) > 10 * min(positive)  # e.g. a first epoch's test loss 50x the last
    if all("holdout_accuracy" in m for m in metrics):  # best.pt is chosen by it (cnnx.train.run.Run.best_epoch)
        best = max(metrics, key=lambda m: m["holdout_accuracy"])
        chosen = f"best held-out accuracy {100 * best['holdout_accuracy']:.2f}% (epoch {best['epoch']}), "
        acc_title = f"{chosen}test {100 * best['test_accuracy']:.2f}%"
    else:
        best = max(metrics, key=lambda m: m["test_accuracy"])
        acc_title = f"best test accuracy {100 * best['test_accuracy']:.2f}% (epoch {best['epoch']})"
    c = _Canvas(CURVES_SIZE)
    top = 58 if title else 34
    if title:
        c.text((CURVES_SIZE[0] / 2, 16), title, 15, align="center")
    _panel(c, (80, top, 475, 338), epochs, losses, "loss (cross-entropy)", log=log)
    acc_box = (590, top, 985, 338)
    c.text(((acc_box[0] + acc_box[2]) / 2, top - 12), acc_title, 11, align="center")
    _panel(c, acc_box, epochs, accuracies, "accuracy (%)")
    return c.save(path)


CELL = 44  # pixels per matrix cell
MARGIN = 70  # room for the class names and axis titles


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
    return write_png(img, path, "choose a writable --confusion path")


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
    return write_png(img, path, "choose a writable --errors path")


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
    return write_png(img, path, "choose a writable --reliability path")
