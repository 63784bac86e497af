"""Photo-like digits made from real MNIST digits: what a phone picture of a digit on paper looks like.

Each digit is inverted to dark ink on light paper, scaled up 3-6x, placed
off-centre on a larger page lit unevenly (a linear fall-off of up to 45 % across
the page in a random direction, plus a vignette), given sensor noise (Gaussian,
sigma 4-9 grey levels) and a warm paper tint, and saved as an RGB JPEG at quality
70-90. Deterministic for a given seed. Used by the tests and bench/infer_speed.py.

``marker_like`` makes the other common picture: a digit drawn with a thick marker, large
in the frame (55-85% of its height), on evenly lit paper.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter


def photo_like(digit: np.ndarray, rng: np.random.Generator, scale: tuple[float, float] = (3.0, 6.0)) -> Image.Image:
    """(28, 28) uint8 MNIST digit (white on black) -> an RGB "photo" of it, dark ink on paper.

    ``scale``: range of the enlargement (the tests use a smaller one, for speed).
    """
    size = int(28 * rng.uniform(*scale))  # the digit's 28x28 field, scaled up
    ink = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC), np.float32)
    ink = np.clip(ink / 255.0, 0.0, 1.0)  # (size, size) ink coverage
    page_w, page_h = int(size * rng.uniform(1.5, 2.4)), int(size * rng.uniform(1.5, 2.4))
    top, left = int(rng.integers(0, page_h - size + 1)), int(rng.integers(0, page_w - size + 1))
    cover = np.zeros((page_h, page_w), np.float32)
    cover[top : top + size, left : left + size] = ink
    yy, xx = np.mgrid[0:page_h, 0:page_w].astype(np.float32)
    v, u = yy / page_h - 0.5, xx / page_w - 0.5  # page coordinates in [-0.5, 0.5]
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * u + np.sin(angle) * v) + 0.5  # 0..~1 across the page
    light = rng.uniform(190, 245) * (1 - rng.uniform(0.2, 0.45) * ramp) * (1 - 0.35 * (u * u + v * v))
    paper_reflect, ink_reflect = 1.0, rng.uniform(0.1, 0.25)
    grey = light * (paper_reflect - (paper_reflect - ink_reflect) * cover)  # (H, W) brightness
    tint = np.array([1.0, 0.96, 0.88], np.float32)  # warm paper under indoor light
    rgb = grey[..., None] * tint + rng.normal(0, rng.uniform(4, 9), (page_h, page_w, 3))
    return Image.fromarray(np.clip(rgb, 0, 255).round().astype(np.uint8), "RGB")


def write_photo_set(
    images: np.ndarray, labels: np.ndarray, folder: Path, seed: int = 0, scale: tuple[float, float] = (3.0, 6.0)
) -> list[Path]:
    """Write one JPEG per digit as folder/<index>_<label>.jpg; returns the paths in order."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (digit, label) in enumerate(zip(images, labels, strict=False)):
        path = folder / f"{i:05d}_{int(label)}.jpg"
        photo_like(digit, rng, scale).save(path, quality=int(rng.integers(70, 91)))
        paths.append(path)
    return paths


def marker_like(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """(28, 28) uint8 MNIST digit -> an RGB photo of it drawn with a thick marker on evenly lit paper,
    the digit 55-85% of the page's height (pages of 260-400 x 240-360 pixels)."""
    page_w, page_h = int(rng.integers(260, 400)), int(rng.integers(240, 360))
    size = int(page_h * rng.uniform(0.55, 0.85) / (20 / 28))  # MNIST's ink takes 20 of the 28 pixels
    big = Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC)
    width = min(2 * int(size * rng.uniform(0.03, 0.06)) + 1, 31)  # the marker: strokes widened by 3-6%
    ink = np.asarray(big.filter(ImageFilter.MaxFilter(width)), np.float32) / 255.0
    top = (page_h - size) // 2 + int(rng.integers(-5, 6))
    left = (page_w - size) // 2 + int(rng.integers(-15, 16))
    cover = np.zeros((page_h, page_w), np.float32)
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + size, page_h), min(left + size, page_w)
    cover[y0:y1, x0:x1] = ink[y0 - top : y1 - top, x0 - left : x1 - left]
    grey = rng.uniform(200, 245) * (1 - (1 - rng.uniform(0.05, 0.15)) * cover)  # marker ink reflects 5-15%
    rgb = grey[..., None] * np.array([1.0, 0.97, 0.92], np.float32) + rng.normal(
        0, rng.uniform(2, 6), (page_h, page_w, 3)
    )
    return Image.fromarray(np.clip(rgb, 0, 255).round().astype(np.uint8), "RGB")
