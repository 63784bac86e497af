"""Open-set images for a digit model: what users photograph or scan that is not one of its classes.

Each generator is deterministic for its seed and returns RGB Pillow images as a phone or a
scanner gives them: dark ink on light, unevenly lit paper, at varied size and position, turned
by up to 12 degrees, sometimes blurred, always with sensor noise, half of them through JPEG
(photo crops are pieces of photos instead, turned, resized, half through JPEG).

Every set has a **role**. "tune" sets may be used to choose anything (a threshold, a recipe);
"report" sets are only measured, never tuned on, and are the figures the README quotes. The two
never share a source: different fonts, photos, dataset indices, and for the drawn sets
different random streams (the role is part of the seed) and different stroke parameters.

- ``printed_letters``: A-Z and a-z in matplotlib's fonts, without the digit look-alikes
  O o (0), l I i (1), S s (5), Z z (2), B (8), b (6), g q (9): a model that calls those a digit
  is arguably right. STIX fonts are "tune", Computer Modern (cmr10, cmss10, cmtt10, cmb10,
  cmti10, cmmi10) "report". The DejaVu fonts are never used: training draws its negatives in them.
- ``handwritten_letters`` ("report"): the same letters in OpenCV's Hershey stroke fonts (two
  script faces and three print faces, some slanted), drawn with a pen of random width and
  warped by a smooth random displacement field, so no two are alike.
- ``pen_letters`` ("tune"): letters written with a pen from another source: the STIX glyphs thinned
  to a one-pixel skeleton and redrawn with a round pen of random width, so a recipe for
  handwriting-like letters is chosen on these and the Hershey letters stay a report.
- ``scribbles`` and ``shapes``: random pen curves and zig-zags; triangles, squares, diamonds,
  stars, crosses, arrows, hearts (outlined or filled). These are the kinds training draws too
  (drawn here by other code, pens, sizes and random streams), so a model may do better on them
  than on the letters and photos. ``rings``: circles and ellipses, kept apart as a look-alike
  row (a ring is a fair 0).
- ``blank_pages``: paper with nothing on it (shown apart: the runtime finds no digit before any
  model runs, so pooling them would flatter the model).
- ``photo_crops``: random crops of photos that scikit-image and matplotlib ship (no download):
  ``TUNE_PHOTOS`` / ``REPORT_PHOTOS``.
- ``foreign_digits``: scikit-learn's ``load_digits``, the test split of UCI's "optical recognition
  of handwritten digits" (its description: 43 people filled in NIST's forms, 30 for the training
  split and 13 others for these 1,797 digits, counted into 8x8 blocks of 0-16; none known to be
  among MNIST's writers), enlarged smoothly to a photo of ink on paper; even indices "tune", odd
  "report". Not writer-disjoint: the dataset gives no writer ids, so one person's digits fall in both.

Photo-like MNIST digits come from ``cnnx.testing.photolike``. Pillow and numpy only at import;
scikit-image, scikit-learn, OpenCV and matplotlib's files are looked for when a set needs them
(``pip install "cnnx[bench]"``).
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from cnnx.core.errors import ConfigError

ROLES = ("tune", "report")
EXCLUDED = "OolIiSsZzBbgq"  # the digit look-alikes (see the module's docstring)
LETTERS = tuple(c for c in string.ascii_letters if c not in EXCLUDED)  # 39 letters
FONTS = {
    "tune": ("STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf"),
    "report": ("cmr10.ttf", "cmss10.ttf", "cmtt10.ttf", "cmb10.ttf", "cmti10.ttf", "cmmi10.ttf"),
}
TUNE_PHOTOS = ("astronaut.png", "chelsea.png", "camera.png", "coins.png", "brick.png", "moon.png")
REPORT_PHOTOS = ("coffee.png", "rocket.jpg", "motorcycle_left.png", "gravel.png", "grass.png", "grace_hopper.jpg")
HERSHEY = ("SCRIPT_SIMPLEX", "SCRIPT_COMPLEX", "SIMPLEX", "DUPLEX", "COMPLEX")
EXTRA = 'pip install "cnnx[bench]"'
_ROLE_KEY = {"tune": 1, "report": 2}  # part of every seed: the two roles never share a random stream
# stroke parameters per role: strokes per image, points per stroke, pen width (fraction of the side)
_SCRIBBLE = {"tune": ((1, 3), (3, 6), (0.02, 0.05)), "report": ((1, 4), (4, 9), (0.04, 0.09))}
# shapes: pen width (fraction of the side) and the fraction drawn filled
_SHAPE = {"tune": ((0.02, 0.05), 0.0), "report": ((0.04, 0.10), 0.3)}


def _need(module: str, package: str) -> Any:
    """Import an optional package, or say in one line how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"{package} is not installed", EXTRA) from None


def _package_dir(module: str, package: str) -> Path:
    """Where an optional package is installed, without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ConfigError(f"{package} is not installed", EXTRA)
    return Path(spec.origin).parent


def _rng(name: str, role: str, seed: int) -> np.random.Generator:
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}", "use 'tune' or 'report'")
    return np.random.default_rng([sum(map(ord, name)), _ROLE_KEY[role], seed])


def _crop(ink: np.ndarray) -> np.ndarray:
    """(H, W) ink in [0, 1] -> its bounding box (a 1x1 blank when empty)."""
    ys, xs = np.nonzero(ink > 0.02)
    return ink[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] if len(ys) else np.zeros((1, 1), np.float32)


def on_paper(ink: np.ndarray, rng: np.random.Generator, fill: tuple[float, float] = (0.35, 0.8)) -> Image.Image:
    """(h, w) float ink coverage in [0, 1] -> an RGB photo of it on paper, the ink taking ``fill`` of the page."""
    turned = Image.fromarray(ink.astype(np.float32), "F").rotate(
        rng.uniform(-12, 12), Image.Resampling.BICUBIC, expand=True
    )
    ink = np.clip(np.asarray(turned), 0.0, 1.0)
    h, w = ink.shape
    side = int(max(h, w) / rng.uniform(*fill))
    page_h, page_w = max(side, h + 2), max(int(side * rng.uniform(0.85, 1.3)), w + 2)
    top, left = int(rng.integers(0, page_h - h + 1)), int(rng.integers(0, page_w - w + 1))
    cover = np.zeros((page_h, page_w), np.float32)
    cover[top : top + h, left : left + w] = ink
    v, u = np.mgrid[0:page_h, 0:page_w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * u / page_w + np.sin(angle) * v / page_h + 0.5  # 0..~1 across the page
    light = rng.uniform(180, 250) * (1 - rng.uniform(0.0, 0.35) * ramp)  # (H, W) paper brightness
    grey = light * (1 - (1 - rng.uniform(0.05, 0.3)) * cover)  # ink reflects 5-30% of the light
    tint = np.array([1.0, rng.uniform(0.94, 1.0), rng.uniform(0.85, 1.0)], np.float32)
    rgb = grey[..., None] * tint + rng.normal(0, rng.uniform(2, 8), (page_h, page_w, 3))
    image = Image.fromarray(np.clip(rgb, 0, 255).round().astype(np.uint8), "RGB")
    blur = rng.uniform(0.0, 1.4)
    if blur > 0.4:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    return _maybe_jpeg(image, rng)


def _maybe_jpeg(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Half of the images go through JPEG at quality 60-92, as a phone saves them."""
    if rng.random() < 0.5:
        return image
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=int(rng.integers(60, 93)))
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def font_path(name: str) -> Path:
    """A font file that matplotlib ships (mpl-data/fonts/ttf)."""
    path = _package_dir("matplotlib", "matplotlib") / "mpl-data" / "fonts" / "ttf" / name
    if not path.is_file():
        raise ConfigError(f"matplotlib has no font {name} ({path})", "reinstall matplotlib")
    return path


def _glyph(letter: str, font: ImageFont.FreeTypeFont, stroke: int) -> np.ndarray:
    size = int(font.size)
    canvas = Image.new("L", (size * 3, size * 3), 0)
    ImageDraw.Draw(canvas).text((size, size // 2), letter, fill=255, font=font, stroke_width=stroke, stroke_fill=255)
    return _crop(np.asarray(canvas, np.float32) / 255.0)


def _letters(kind: str, n: int, role: str, seed: int, ink: Callable[..., np.ndarray]) -> list[Image.Image]:
    """``n`` letters in the role's fonts, letters and fonts taken in turn, 40-160 px high, each drawn by
    ``ink(letter, font, rng)`` ((H, W) ink in [0, 1]) and put on paper."""
    rng = _rng(kind, role, seed)
    fonts = [font_path(name) for name in FONTS[role]]
    out = []
    for i in range(n):
        letter, font = LETTERS[i % len(LETTERS)], fonts[(i // len(LETTERS)) % len(fonts)]
        size = int(rng.integers(40, 161))
        out.append(on_paper(ink(letter, ImageFont.truetype(str(font), size), rng), rng))
    return out


def printed_letters(n: int, role: str = "report", seed: int = 0) -> list[Image.Image]:
    """``n`` printed letters in the role's fonts, letters and fonts taken in turn, 40-160 px high."""

    def printed(letter: str, font: ImageFont.FreeTypeFont, rng: np.random.Generator) -> np.ndarray:
        stroke = int(rng.integers(0, int(font.size) // 30 + 1))  # bolder ink: 0 to 3% of the size
        return _glyph(letter, font, stroke)

    return _letters("printed", n, role, seed, printed)


def thin(ink: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning: the one-pixel-wide skeleton (uint8 0/1) of a (H, W) boolean image."""
    img = np.pad(ink.astype(np.uint8), 1)
    while True:
        removed = 0
        for step in (0, 1):
            c = img[1:-1, 1:-1]
            # the 8 neighbours clockwise from the one above: P2 .. P9 in Zhang and Suen's paper
            p = [img[:-2, 1:-1], img[:-2, 2:], img[1:-1, 2:], img[2:, 2:]]
            p += [img[2:, 1:-1], img[2:, :-2], img[1:-1, :-2], img[:-2, :-2]]
            count = sum(q.astype(np.int32) for q in p)
            rises = sum(((p[k] == 0) & (p[(k + 1) % 8] == 1)).astype(np.int32) for k in range(8))
            if step == 0:
                side = (p[0] * p[2] * p[4] == 0) & (p[2] * p[4] * p[6] == 0)
            else:
                side = (p[0] * p[2] * p[6] == 0) & (p[0] * p[4] * p[6] == 0)
            kill = (c == 1) & (count >= 2) & (count <= 6) & (rises == 1) & side
            removed += int(kill.sum())
            c[kill] = 0
        if not removed:
            return img[1:-1, 1:-1]


def pen_letters(n: int, role: str = "tune", seed: int = 0) -> list[Image.Image]:
    """``n`` letters written with a pen: the role's fonts' glyphs thinned to a skeleton and redrawn
    with a round pen of random width, letters and fonts taken in turn, 40-160 px high."""

    def written(letter: str, font: ImageFont.FreeTypeFont, rng: np.random.Generator) -> np.ndarray:
        size = int(font.size)
        skeleton = thin(_glyph(letter, font, 0) > 0.5)
        pen = 2 * int(rng.integers(size // 80 + 1, size // 30 + 2)) + 1  # odd: a round pen centred on the line
        ink = Image.fromarray(skeleton * 255).filter(ImageFilter.MaxFilter(pen)).filter(ImageFilter.GaussianBlur(0.8))
        return np.asarray(ink, np.float32) / 255.0

    return _letters("pen", n, role, seed, written)


def _warp(ink: np.ndarray, rng: np.random.Generator, cv2: Any) -> np.ndarray:
    """A hand's wobble: a smooth random displacement (up to 7% of the letter) and a shear."""
    h, w = ink.shape
    sigma, amp = 0.15 * max(h, w), rng.uniform(0.02, 0.07) * max(h, w)
    field = []
    for _ in range(2):
        d = cv2.GaussianBlur(rng.uniform(-1, 1, (h, w)).astype(np.float32), (0, 0), sigma)
        field.append(d * (amp / (np.abs(d).max() + 1e-6)))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    shear = rng.uniform(-0.25, 0.25)
    map_x = xx + field[0] + shear * (yy - h / 2)
    return cv2.remap(ink, map_x.astype(np.float32), yy + field[1], cv2.INTER_LINEAR, borderValue=0)


def handwritten_letters(n: int, role: str = "report", seed: int = 0) -> list[Image.Image]:
    """``n`` letters drawn in OpenCV's Hershey stroke fonts with a random pen, each warped its own way."""
    cv2 = _need("cv2", "opencv-python-headless")
    rng = _rng("handwritten", role, seed)
    out = []
    for i in range(n):
        letter = LETTERS[i % len(LETTERS)]
        face = getattr(cv2, "FONT_HERSHEY_" + HERSHEY[(i // len(LETTERS)) % len(HERSHEY)])
        face |= cv2.FONT_ITALIC if rng.random() < 0.3 else 0
        scale = rng.uniform(1.5, 4.5)  # about 35-100 px high
        pen = int(rng.integers(2, 3 + int(2.5 * scale)))
        (tw, th), base = cv2.getTextSize(letter, face, scale, pen)
        pad = 2 * pen + int(0.3 * th)
        canvas = np.zeros((th + base + 2 * pad, tw + 2 * pad), np.uint8)
        cv2.putText(canvas, letter, (pad, pad + th), face, scale, 255, pen, cv2.LINE_AA)
        out.append(on_paper(_crop(_warp(canvas.astype(np.float32) / 255.0, rng, cv2)), rng))
    return out


def _chaikin(points: np.ndarray, rounds: int = 3) -> np.ndarray:
    """(k, 2) polyline -> a smooth curve through its corners (Chaikin's corner cutting)."""
    for _ in range(rounds):
        a, b = points[:-1], points[1:]
        points = np.concatenate([points[:1], np.stack([0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b], 1).reshape(-1, 2)])
        points = np.concatenate([points, b[-1:]])
    return points


def _pen_page(side: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """A blank (side, side) ink layer to draw on: 0 = paper, 255 = ink."""
    canvas = Image.new("L", (side, side), 0)
    return canvas, ImageDraw.Draw(canvas)


def _photographed(canvas: Image.Image, rng: np.random.Generator) -> Image.Image:
    return on_paper(_crop(np.asarray(canvas, np.float32) / 255.0), rng)


def scribbles(n: int, role: str = "report", seed: int = 0) -> list[Image.Image]:
    """``n`` pages of random pen strokes: smooth curves, or zig-zags (a third of the strokes)."""
    rng = _rng("scribbles", role, seed)
    strokes, points, width = _SCRIBBLE[role]
    out = []
    for _ in range(n):
        side = int(rng.integers(96, 257))
        canvas, draw = _pen_page(side)
        pen = max(2, int(side * rng.uniform(*width)))
        for _ in range(int(rng.integers(strokes[0], strokes[1] + 1))):
            k = int(rng.integers(points[0], points[1] + 1))
            pts = rng.uniform(0.1, 0.9, (k, 2)) * side  # (k, 2) x, y in pixels
            if rng.random() < 1 / 3:  # a zig-zag: left to right, up and down in turn
                pts[:, 0] = np.sort(pts[:, 0])
                pts[:, 1] = np.where(np.arange(k) % 2, pts[:, 1] * 0.4, 0.6 * side + pts[:, 1] * 0.4)
            else:
                pts = _chaikin(pts)
            draw.line([tuple(p) for p in pts.tolist()], fill=255, width=pen, joint="curve")
        out.append(_photographed(canvas, rng))
    return out


def _outline(kind: str, rng: np.random.Generator) -> np.ndarray:
    """(k, 2) closed outline of a shape in about [-1, 1]^2, y down."""
    if kind == "heart":
        t = np.linspace(0, 2 * np.pi, 60)
        return np.stack([16 * np.sin(t) ** 3, -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t))], 1) / 16
    if kind == "cross":
        a = rng.uniform(0.2, 0.4)  # half the arm's width
        q = [(a, -1), (a, -a), (1, -a), (1, a), (a, a), (a, 1)]
        return np.array(q + [(-x, -y) for x, y in q], float)
    if kind == "arrow":
        a, head = rng.uniform(0.15, 0.3), rng.uniform(0.2, 0.5)
        return np.array([(-1, -a), (head, -a), (head, -0.7), (1, 0), (head, 0.7), (head, a), (-1, a)], float)
    corners, start, inner = {
        "triangle": (3, -90, 1),
        "square": (4, 45, 1),
        "diamond": (4, 0, 1),
        "star": (10, -90, 0.4),
    }[kind]
    angles = np.deg2rad(start + np.arange(corners) * 360 / corners)
    radii = np.where(np.arange(corners) % 2, inner, 1.0)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)


SHAPES = ("triangle", "square", "diamond", "star", "cross", "arrow", "heart")


def shapes(n: int, role: str = "report", seed: int = 0) -> list[Image.Image]:
    """``n`` simple shapes (``SHAPES`` in turn), stretched and turned at random, outlined or filled."""
    rng = _rng("shapes", role, seed)
    width, filled = _SHAPE[role]
    out = []
    for i in range(n):
        side = int(rng.integers(96, 257))
        canvas, draw = _pen_page(side)
        pts = _outline(SHAPES[i % len(SHAPES)], rng) * rng.uniform(0.6, 1.0, 2)  # stretched
        turn = rng.uniform(-np.pi / 6, np.pi / 6)
        pts = pts @ np.array([[np.cos(turn), np.sin(turn)], [-np.sin(turn), np.cos(turn)]])
        ring = [tuple(p) for p in ((pts * 0.4 + 0.5) * side).tolist()]
        pen = max(2, int(side * rng.uniform(*width)))
        if rng.random() < filled:
            draw.polygon(ring, fill=255)
        else:  # closed, and one more corner so the first one gets its curved joint
            draw.line([*ring, ring[0], ring[1]], fill=255, width=pen, joint="curve")
        out.append(_photographed(canvas, rng))
    return out


def rings(n: int, role: str = "report", seed: int = 0) -> list[Image.Image]:
    """``n`` outlined circles and ellipses: the look-alikes of a 0, measured apart from the rest."""
    rng = _rng("rings", role, seed)
    out = []
    for _ in range(n):
        side = int(rng.integers(96, 257))
        canvas, draw = _pen_page(side)
        rx, ry = side * 0.4, side * 0.4 * rng.uniform(0.45, 1.0)
        pen = max(2, int(side * rng.uniform(0.03, 0.09)))
        draw.ellipse((side / 2 - rx, side / 2 - ry, side / 2 + rx, side / 2 + ry), outline=255, width=pen)
        out.append(_photographed(canvas, rng))
    return out


def blank_pages(n: int, role: str = "report", seed: int = 0) -> list[Image.Image]:
    """``n`` photos of paper with nothing on it: light, tint, noise, blur and JPEG only."""
    rng = _rng("blank", role, seed)
    return [on_paper(np.zeros((int(rng.integers(40, 200)),) * 2, np.float32), rng) for _ in range(n)]


def photo_path(name: str) -> Path:
    """A photo shipped inside scikit-image (skimage/data) or matplotlib (sample_data)."""
    if name == "grace_hopper.jpg":
        path = _package_dir("matplotlib", "matplotlib") / "mpl-data" / "sample_data" / name
    else:
        path = _package_dir("skimage", "scikit-image") / "data" / name
    if not path.is_file():
        raise ConfigError(f"{path} is missing", "reinstall scikit-image / matplotlib; cnnx downloads no photo")
    return path


def photo_crops(n: int, role: str = "report", seed: int = 0) -> list[Image.Image]:
    """``n`` random crops (15-60% of the short side, turned up to 10 degrees) of the role's photos, in turn."""
    rng = _rng("photos", role, seed)
    photos = []
    for name in TUNE_PHOTOS if role == "tune" else REPORT_PHOTOS:
        with Image.open(photo_path(name)) as image:
            photos.append(image.convert("RGB"))
    out = []
    for i in range(n):
        photo = photos[i % len(photos)]
        w, h = photo.size
        side = int(min(w, h) * rng.uniform(0.15, 0.6))
        left, top = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        crop = photo.crop((left, top, left + side, top + side)).rotate(
            rng.uniform(-10, 10), Image.Resampling.BILINEAR, fillcolor=(128, 128, 128)
        )
        edge = int(rng.integers(64, 257))
        aspect = rng.uniform(0.75, 1.33)
        out.append(_maybe_jpeg(crop.resize((edge, max(16, int(edge * aspect))), Image.Resampling.BILINEAR), rng))
    return out


def foreign_digits(n: int | None = None, role: str = "report", seed: int = 0) -> tuple[list[Image.Image], list[int]]:
    """scikit-learn's handwritten 8x8 digits (even indices "tune", odd "report"), the first ``n`` of the
    role's, each enlarged smoothly to 48-160 px and photographed on paper; (images, labels)."""
    datasets = _need("sklearn.datasets", "scikit-learn")
    rng = _rng("foreign", role, seed)
    digits = datasets.load_digits()
    index = np.arange(0 if role == "tune" else 1, len(digits.target), 2)[:n]
    images = []
    for i in index:
        edge = int(rng.integers(48, 161))
        ink = Image.fromarray(digits.images[i].astype(np.float32) / 16.0, "F")  # 0..16 counts -> [0, 1]
        ink = ink.resize((edge, edge), Image.Resampling.BICUBIC)
        images.append(on_paper(np.clip(np.asarray(ink), 0.0, 1.0), rng, fill=(0.4, 0.75)))
    return images, [int(digits.target[i]) for i in index]


@dataclass(frozen=True)
class OpenSet:
    """One evaluation set: its name, role, where its images come from, and how to make them."""

    name: str
    role: str  # "tune": may be used to choose things; "report": only measured
    source: str  # one line: what the images are
    make: Callable[[int, str, int], Any]  # (n, role, seed) -> images, or (images, labels)
    size: int  # images made by default
    labelled: bool = False  # digits with known labels: accuracy is measured
    # False: a row shown apart, not pooled with the non-digits: rings (a fair 0) and blank pages
    # (refused by the runtime's "no digit found" before any model runs, so they would flatter it)
    counted: bool = True

    def images(self, n: int | None = None, seed: int = 0) -> tuple[list[Image.Image], list[int | None]]:
        """(images, labels): labels are None for sets that hold no digit."""
        made = self.make(self.size if n is None else min(n, self.size), self.role, seed)
        if self.labelled:
            return made[0], list(made[1])
        return made, [None] * len(made)


def _sets(role: str) -> list[OpenSet]:
    fonts = ", ".join(f.removesuffix(".ttf") for f in FONTS[role])
    photos = ", ".join(TUNE_PHOTOS if role == "tune" else REPORT_PHOTOS)
    hand = [OpenSet("letters-hand-report", role, "Hershey letters, warped", handwritten_letters, 390)]
    pen = [OpenSet("letters-pen-tune", role, f"letters thinned, redrawn with a pen, fonts {fonts}", pen_letters, 390)]
    return [
        OpenSet(f"letters-printed-{role}", role, f"printed letters, fonts {fonts}", printed_letters, 390),
        *(hand if role == "report" else pen),  # handwriting-like letters: Hershey to report, pen letters to tune
        OpenSet(f"scribbles-{role}", role, "random pen curves and zig-zags", scribbles, 300),
        OpenSet(f"shapes-{role}", role, "outlined/filled " + "/".join(SHAPES), shapes, 350),
        OpenSet(f"photos-{role}", role, f"photo crops of {photos}", photo_crops, 300),
        OpenSet(f"blank-{role}", role, "photos of empty paper", blank_pages, 100, counted=False),
        OpenSet(f"foreign-digits-{role}", role, "sklearn load_digits, upscaled on paper", foreign_digits, 899, True),
    ]


# every set, tune first
SETS = (
    *_sets("tune"),
    *_sets("report"),
    OpenSet("rings-report", "report", "circles and ellipses (0 look-alikes)", rings, 100, counted=False),
)
