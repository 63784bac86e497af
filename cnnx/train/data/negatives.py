"""Generated non-digits for outlier exposure: what users point a digit reader at that is not a digit.

A digit model trained on digits alone answers "8, 97%" for a letter B: nothing in
training told it what not-a-digit looks like. Outlier exposure (Hendrycks et al., 2019)
adds a second loss that pushes the model's output towards uniform on images that belong
to no class; a threshold on the largest probability then refuses them. These images are
drawn here, dark ink on light paper as a camera would see them, and put through the
runtime's own ``mnist-digit`` recipe, so they reach the network exactly as a user's
photo of them would:

- printed letters in the DejaVu fonts matplotlib ships (the digit look-alikes left out),
- random pen scribbles (smooth curves through 3-7 points) and zig-zags,
- polygons, stars, hearts, crosses and arrows, filled or outlined (circles left out: a 0),
- smoothed-noise blobs (texture and photo-like clutter).

The evaluation sets that report how well refusing works are made elsewhere
(``cnnx.testing.openset``) from other fonts, other photos and other seeds.

Pillow and numpy; a bank is made once and cached as an ``.npy`` file (the two banks of 6,000 images
take 40-45 s on a 2-core CPU: a new seed's run in bench/train_speed.py before they were shared), and
every later run loads them, whatever its seed (``cnnx.train.honesty.Photographed``).
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

from cnnx.core.errors import ImageError
from cnnx.core.fileio import atomic_write
from cnnx.core.spec import ModelSpec

VERSION = 6  # part of the cache file name: bump when the drawing changes
CANVAS = 96  # pixels per side of the "photo" a negative is drawn on
SCENES = 0.2  # share of the non-digits that are crops of ordinary scenes (``scene``), not ink on paper
# letters that a person may write as a digit, or that the digit recipe makes one of: O/o/Q/D as 0,
# I/l/i/j/J as 1, S/s as 5, Z/z as 2, B as 8, b/G as 6, g/q as 9
LOOKALIKES = set("OoQDIlijJSsZzBbGgq")
LETTERS = "".join(c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if c not in LOOKALIKES)
FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
)


# A long job's progress: called with what it does and how many units, it returns the call made per unit done
Progress = Callable[[str, int], Callable[[], None]]


def _none() -> None:
    return None


def quiet(text: str, total: int) -> Callable[[], None]:
    """The Progress that shows nothing."""
    return _none


def _font_dir() -> Path | None:
    """matplotlib's font folder, found without importing matplotlib (which takes longer than a run's plots)."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf"


def _letter(draw: object, rng: np.random.Generator, fonts: list[object]) -> None:
    from PIL import ImageFont

    if not fonts:  # no matplotlib: Pillow's own scalable default font
        fonts.append(ImageFont.load_default(size=60))
    font = fonts[int(rng.integers(len(fonts)))]
    text = LETTERS[int(rng.integers(len(LETTERS)))]
    xy = (CANVAS / 2 + rng.uniform(-8, 8), CANVAS / 2 + rng.uniform(-8, 8))
    draw.text(xy, text, fill=255, font=font, anchor="mm")  # type: ignore[attr-defined]


def _points(rng: np.random.Generator, n: int) -> list[tuple[float, float]]:
    return [(float(rng.uniform(15, CANVAS - 15)), float(rng.uniform(15, CANVAS - 15))) for _ in range(n)]


def _scribble(draw: object, rng: np.random.Generator) -> None:
    """A smooth curve (Catmull-Rom through 5-8 random points) or a zig-zag, one pen width."""
    pts = _points(rng, int(rng.integers(5, 9)))  # fewer points draw strokes a digit is made of: a 1, a 7
    if rng.random() < 0.7:
        curve = []
        ext = [pts[0], *pts, pts[-1]]
        for i in range(1, len(ext) - 2):
            p0, p1, p2, p3 = (np.array(p) for p in ext[i - 1 : i + 3])
            for t in np.linspace(0, 1, 12):
                curve.append(
                    tuple(
                        0.5
                        * (
                            2 * p1
                            + (p2 - p0) * t
                            + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t * t
                            + (3 * p1 - p0 - 3 * p2 + p3) * t**3
                        )
                    )
                )
        pts = curve
    draw.line(pts, fill=255, width=int(rng.integers(3, 10)), joint="curve")  # type: ignore[attr-defined]


def _shape(draw: object, rng: np.random.Generator) -> None:
    """A filled or outlined polygon, star, cross or arrow."""
    cx, cy, r = CANVAS / 2 + rng.uniform(-6, 6), CANVAS / 2 + rng.uniform(-6, 6), rng.uniform(18, 38)
    kind = int(rng.integers(6))
    turn = rng.uniform(0, 2 * math.pi)
    if kind == 4:  # heart: two lobes and a point, squashed or stretched
        a = np.linspace(0, 2 * math.pi, 48)
        hx, hy = 16 * np.sin(a) ** 3, -(13 * np.cos(a) - 5 * np.cos(2 * a) - 2 * np.cos(3 * a) - np.cos(4 * a))
        stretch = rng.uniform(0.7, 1.3)
        pts = [(cx + r / 17 * x * stretch, cy + r / 17 * y) for x, y in zip(hx, hy, strict=True)]
    elif kind == 5:  # plus sign as an outline (a filled one is a cross of strokes)
        w = r * rng.uniform(0.25, 0.4)
        corners = [
            (w, r),
            (w, w),
            (r, w),
            (r, -w),
            (w, -w),
            (w, -r),
            (-w, -r),
            (-w, -w),
            (-r, -w),
            (-r, w),
            (-w, w),
            (-w, r),
        ]
        c, s_ = math.cos(turn), math.sin(turn)
        pts = [(cx + x * c - y * s_, cy + x * s_ + y * c) for x, y in corners]
    elif kind == 0:  # regular polygon, 3-6 sides
        n = int(rng.integers(3, 7))
        pts = [
            (cx + r * math.cos(turn + 2 * math.pi * i / n), cy + r * math.sin(turn + 2 * math.pi * i / n))
            for i in range(n)
        ]
    elif kind == 1:  # star, 4-7 points
        n = int(rng.integers(4, 8))
        pts = [
            (cx + (r if i % 2 == 0 else r * 0.45) * math.cos(turn + math.pi * i / n),
             cy + (r if i % 2 == 0 else r * 0.45) * math.sin(turn + math.pi * i / n))
            for i in range(2 * n)
        ]  # fmt: skip
    else:  # cross (kind 2) or arrow (kind 3): strokes
        ends = [(cx - r, cy), (cx + r, cy)] if kind == 3 else [(cx - r, cy - r), (cx + r, cy + r)]
        width = int(rng.integers(3, 10))
        draw.line(ends, fill=255, width=width)  # type: ignore[attr-defined]
        other = (
            [(cx + r - 14, cy - 12), (cx + r, cy), (cx + r - 14, cy + 12)]
            if kind == 3
            else [(cx - r, cy + r), (cx + r, cy - r)]
        )
        draw.line(other, fill=255, width=width)  # type: ignore[attr-defined]
        return
    if rng.random() < 0.5:
        draw.polygon(pts, fill=255)  # type: ignore[attr-defined]
    else:
        draw.polygon(pts, outline=255, width=int(rng.integers(3, 8)))  # type: ignore[attr-defined]


def _blob(rng: np.random.Generator) -> np.ndarray:
    """(CANVAS, CANVAS) uint8 ink of clutter: smoothed noise at a random scale, thresholded into patches."""
    from PIL import Image, ImageFilter

    cells = int(rng.integers(3, 12))
    noise = Image.fromarray((rng.random((cells, cells)) * 255).astype(np.uint8)).resize(
        (CANVAS, CANVAS), Image.Resampling.BICUBIC
    )
    a = np.asarray(noise.filter(ImageFilter.GaussianBlur(2)), np.float32)
    cut = np.quantile(a, rng.uniform(0.55, 0.9))
    return np.where(a > cut, 255, 0).astype(np.uint8)


def scene(rng: np.random.Generator) -> np.ndarray:
    """(CANVAS, CANVAS) uint8 greyscale photo of no ink at all: a crop of an ordinary scene, drawn as
    overlapping objects (the "dead leaves" model of natural images): shaded ellipses, slabs and
    wedges of random sizes and tones over a lit background, some textured, then blurred, noisy and
    sometimes stretched. What a camera pointed at a desk, a face or a wall gives the digit recipe.
    """
    from PIL import Image, ImageDraw, ImageFilter

    v, u = np.mgrid[0:CANVAS, 0:CANVAS].astype(np.float32) / np.float32(CANVAS) - 0.5
    turn = rng.uniform(0, 2 * np.pi)
    base = rng.uniform(40, 220) + rng.uniform(-80, 80) * (np.cos(turn) * u + np.sin(turn) * v)
    out = base.astype(np.float32)
    for _ in range(int(rng.integers(2, 14))):
        mask = Image.new("L", (CANVAS, CANVAS), 0)
        draw = ImageDraw.Draw(mask)
        cx, cy = rng.uniform(-10, CANVAS + 10, 2)
        r = float(CANVAS * rng.uniform(0.04, 0.6) ** 1.5 + 2)
        kind = int(rng.integers(4))
        if kind == 0:
            draw.ellipse((cx - r, cy - r * rng.uniform(0.3, 1.0), cx + r, cy + r * rng.uniform(0.3, 1.0)), fill=255)
        elif kind == 1:  # a slab: a long rotated rectangle (an edge, a stripe, a pole)
            a, length, width = rng.uniform(0, np.pi), r * rng.uniform(1.5, 4), r * rng.uniform(0.1, 0.5)
            dx, dy, nx, ny = np.cos(a) * length, np.sin(a) * length, -np.sin(a) * width, np.cos(a) * width
            draw.polygon([(cx - dx - nx, cy - dy - ny), (cx + dx - nx, cy + dy - ny),
                          (cx + dx + nx, cy + dy + ny), (cx - dx + nx, cy - dy + ny)], fill=255)  # fmt: skip
        elif kind == 2:  # a wedge or a polygon
            n = int(rng.integers(3, 7))
            angles = np.sort(rng.uniform(0, 2 * np.pi, n))
            draw.polygon([(cx + r * np.cos(t), cy + r * np.sin(t)) for t in angles], fill=255)
        else:  # a half-plane: a table edge, a horizon
            a = rng.uniform(0, 2 * np.pi)
            far = 4 * CANVAS
            pts = [(cx + far * np.cos(a + d), cy + far * np.sin(a + d)) for d in (-1.5, 0.0, 1.5)]
            draw.polygon([(cx, cy), *pts], fill=255)
        soft = mask.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 2.5))))
        alpha = np.asarray(soft, np.float32) / 255
        tone = rng.uniform(0, 255) + rng.uniform(-60, 60) * (np.cos(turn + 1) * u + np.sin(turn + 1) * v)
        if rng.random() < 0.3:  # textured: gravel, grass, fabric
            cells = int(rng.integers(8, 40))
            noise = Image.fromarray((rng.random((cells, cells)) * 255).astype(np.uint8))
            tone = tone + (
                np.asarray(noise.resize((CANVAS, CANVAS), Image.Resampling.BICUBIC), np.float32) - 128
            ) * rng.uniform(0.2, 0.8)
        out = out * (1 - alpha) + tone * alpha
    out += rng.normal(0, rng.uniform(1, 8), out.shape)
    image = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.5))))
    if rng.random() < 0.5:  # cropped from a photo of another shape, resized as a camera app does
        w = int(CANVAS * rng.uniform(0.6, 1.4))
        image = image.resize((w, CANVAS), Image.Resampling.BILINEAR)
    return np.asarray(image)


def photograph(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(H, W) uint8 ink coverage (255 = ink) -> the same drawing as a greyscale photo of paper:
    dark ink on light paper at random levels, lit unevenly (a linear fall-off of up to 45% across the
    page and a vignette), turned a little, sometimes blurred, with sensor noise.

    Digits and non-digits are both photographed here before the recipe sees them, so nothing but
    their shapes tells them apart: a model must not learn "came through the recipe" as "no digit".
    """
    from PIL import Image, ImageFilter

    cover = Image.fromarray(ink).rotate(float(rng.uniform(-15, 15)), resample=Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        cover = cover.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.5))))
    h, w = ink.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float32) / np.float32(h) - 0.5  # page coordinates in [-0.5, 0.5]
    turn = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(turn) * u + np.sin(turn) * v + 0.5  # uneven light: 0..1 across the page
    light = (1 - rng.uniform(0, 0.45) * ramp) * (1 - rng.uniform(0, 0.5) * (u * u + v * v))  # and a vignette
    paper, dark = rng.uniform(170, 250), rng.uniform(0, 80)
    grey = light * (paper - (paper - dark) * np.asarray(cover, np.float32) / 255)
    grey += rng.normal(0, rng.uniform(0, 6), grey.shape)
    return np.clip(grey, 0, 255).astype(np.uint8)


def draw_negative(rng: np.random.Generator, fonts: list[object]) -> np.ndarray:
    """(CANVAS, CANVAS) uint8 ink of one non-digit (255 = ink)."""
    from PIL import Image, ImageDraw

    kind = rng.choice(4, p=[0.35, 0.2, 0.3, 0.15])
    if kind == 3:
        return _blob(rng)
    img = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(img)
    (_letter(draw, rng, fonts) if kind == 0 else _scribble(draw, rng) if kind == 1 else _shape(draw, rng))
    return np.asarray(img)


def draw_digit(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(CANVAS, CANVAS) uint8 ink of a (28, 28) MNIST digit, enlarged 1.6-3.2x, placed off-centre. A
    fifth each drawn with a thicker pen, with a finer pen, seen at low resolution (a small digit in a
    photo, a scan at 8-14 pixels: blocky strokes), or scanned into a form's box (stretched towards the
    box's shape, then sampled at 8-16 pixels, as form readers and older digit sets store a digit);
    the rest as MNIST drew them."""
    from PIL import Image, ImageFilter

    side = int(28 * rng.uniform(1.6, 3.2))
    ink = Image.fromarray(digit)
    look = rng.random()
    if look < 0.2:
        ink = ink.filter(ImageFilter.MaxFilter(3))
    elif look < 0.4:
        low = int(rng.integers(8, 15))
        ink = ink.resize((low, low), Image.Resampling.BOX)
    elif look >= 0.6 and look < 0.8:
        ink = _boxed(digit, rng)
    ink = ink.resize((side, side), Image.Resampling.BICUBIC)
    if 0.4 <= look < 0.6:  # a fine pen: strokes a pixel or two thinner at this size
        ink = ink.filter(ImageFilter.MinFilter(3))
    out = np.zeros((CANVAS, CANVAS), np.uint8)
    top, left = (int(rng.integers(0, CANVAS - side + 1)) for _ in range(2))
    out[top : top + side, left : left + side] = np.asarray(ink)
    return out


def _boxed(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A digit as a form reader stores it: its ink box stretched part of the way to a square (a narrow
    1 becomes a wide bar with its flag and foot), sampled at 8-16 pixels."""
    from PIL import Image

    ys, xs = np.nonzero(digit > 40)
    if not len(ys):
        return Image.fromarray(digit)
    box = digit[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = box.shape
    reach = rng.uniform(0.3, 1.0)  # how far towards the box's shape: 1 = filled
    width = max(1, int(round(w + (h - w) * reach))) if w < h else w
    height = max(1, int(round(h + (w - h) * reach))) if h < w else h
    low = int(rng.integers(8, 17))
    margin = int(rng.integers(0, 2))
    frame = Image.new("L", (4 * low, 4 * low), 0)
    inner = 4 * (low - 2 * margin)
    scale = inner / max(width, height)
    stretched = Image.fromarray(box).resize(
        (max(1, int(width * scale)), max(1, int(height * scale))), Image.Resampling.BILINEAR
    )
    frame.paste(stretched, ((4 * low - stretched.width) // 2, (4 * low - stretched.height) // 2))
    return frame.resize((low, low), Image.Resampling.BOX)


def _load_fonts() -> list[object]:
    from PIL import ImageFont

    folder = _font_dir()
    found = [folder / f for f in FONTS] if folder else []
    return [ImageFont.truetype(str(p), size=size) for p in found if p.is_file() for size in (56, 72)]


def make_bank(
    spec: ModelSpec, count: int, seed: int = 0, digits: np.ndarray | None = None, tick: Callable[[], None] = _none
) -> np.ndarray:
    """(count, 1, 28, 28) uint8 images as the model sees them: photographed, then the spec's recipe.

    ``digits`` None: non-digits. ``digits`` (count, 28, 28) uint8: those digits, photographed alike.
    ``tick`` is called once per image made.
    """
    from cnnx.runtime.image import preprocess

    rng = np.random.default_rng(seed)
    fonts = _load_fonts()
    out = np.zeros((count, *spec.input_shape), np.uint8)
    made = 0
    while made < count:
        if digits is None and rng.random() < SCENES:
            photo = scene(rng)
        else:
            photo = photograph(draw_negative(rng, fonts) if digits is None else draw_digit(digits[made], rng), rng)
        try:
            out[made] = preprocess(photo, spec)
        except ImageError:  # too faint to find ink in: draw again
            continue
        made += 1
        tick()
    return out


def cached_bank(
    spec: ModelSpec,
    count: int,
    cache_dir: Path,
    seed: int = 0,
    digits: np.ndarray | None = None,
    progress: Progress = quiet,
) -> np.ndarray:
    """``make_bank``, kept in ``cache_dir`` (named by what it was made from) so later runs load it in
    milliseconds; ``progress`` follows the making of one."""
    import hashlib

    c, h, w = spec.input_shape
    kind = "negatives" if digits is None else "digits-" + hashlib.sha256(digits.tobytes()).hexdigest()[:12]
    path = Path(cache_dir) / f"cnnx-{kind}-v{VERSION}-{spec.preprocess}-{c}x{h}x{w}-{count}-{seed}.npy"
    if path.is_file():
        try:
            bank = np.load(path)
            if bank.shape == (count, c, h, w) and bank.dtype == np.uint8:
                return bank
        except (OSError, ValueError):
            pass  # a damaged cache file: make it again
    what = "non-digits" if digits is None else "digits"
    tick = progress(f"making {count:,} photographed {what} for outlier exposure, once: later runs load {path}", count)
    bank = make_bank(spec, count, seed, digits, tick)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: np.save(f, bank))
    except OSError:
        pass  # a read-only data folder: the bank still serves this run
    return bank
