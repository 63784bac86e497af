"""The ``mnist-digit`` recipe: a photo, scan or drawing of one digit -> what MNIST looks like.

MNIST was made by fitting each digit into a 20x20 box (aspect kept), then
placing it in a 28x28 field so that its centre of mass sits at the centre,
white ink on black. ``mnist_digits`` does the same to a batch of greyscale images:

- images on a uniform background (MNIST itself, canvas drawings, clean
  synthetic scans) all at once, vectorised, in uint8 where possible: the ink is
  the difference from the background level (divided by the paper level for dark
  ink on light paper, stretched when weak);
- the others (photos, JPEGs, uneven light, noise) one by one through
  ``cnnx.runtime.photo``;

then each crop is fitted into the box and shifted so its centre of mass lands on
the centre of the field. An image that is already an MNIST digit comes out
unchanged (bar the 0.1% of MNIST digits cut off at the border), so PNGs of MNIST
test digits score what the IDX files score. numpy and Pillow only.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from cnnx.runtime.photo import EDGE_FRACTION, FULL_INK, MIN_INK, bbox, ink_image, median

# Fraction of the output field the digit box takes: MNIST fits 20x20 into 28x28.
BOX_FRACTION = 20 / 28
# Uniform-background test: when this fraction of the border ring has one grey level, the
# background is clean (synthetic images, canvas drawings, MNIST) and the rest of the ring
# is ink touching the border. Anything noisier takes the general path.
UNIFORM_BORDER = 0.9


def fit_and_centre(crop: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Fit (h, w) ink in [0, 1] into the digit box, centre it by mass in out_hw; float32 [0, 1]."""
    out_h, out_w = out_hw
    box = max(1, round(BOX_FRACTION * min(out_h, out_w)))
    h, w = crop.shape
    scale = box / max(h, w)
    if scale != 1.0:
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        # Pillow's bilinear widens its kernel when shrinking, so this is anti-aliased
        resized = Image.fromarray(crop.astype(np.float32), mode="F").resize((nw, nh), Image.Resampling.BILINEAR)
        crop = np.asarray(resized, dtype=np.float32)
        peak = float(crop.max())
        if peak > 0:
            # thin strokes lose intensity when shrunk; MNIST strokes peak at full white
            crop = np.clip(crop * (1.0 / peak), 0.0, 1.0)
        h, w = crop.shape
    mass = float(crop.sum())
    if mass <= 0:
        return np.zeros(out_hw, dtype=np.float32)
    cy = float(crop.sum(axis=1) @ np.arange(h)) / mass
    cx = float(crop.sum(axis=0) @ np.arange(w)) / mass
    # MNIST's centres of mass lie in [13.5, 14.5] in pixel-index units: target 14.0
    top = int(_round_half_even(np.float64(out_h / 2 - cy)))
    left = int(_round_half_even(np.float64(out_w / 2 - cx)))
    top, left = min(max(top, 0), out_h - h), min(max(left, 0), out_w - w)
    out = np.zeros(out_hw, dtype=np.float32)
    out[top : top + h, left : left + w] = crop
    return out


def _round_half_even(v: np.ndarray) -> np.ndarray:
    # rounding to 6 places first keeps a half-pixel tie (MNIST has many) from becoming a shift;
    # rint(v * 1e6) / 1e6 is what np.round(v, 6) computes, without its Python-level overhead
    return np.rint(np.rint(v * 1e6) / 1e6).astype(np.int64)


def _between(v: np.ndarray, lo: np.ndarray | int, hi: np.ndarray | int) -> np.ndarray:
    # np.clip through the ufuncs: the same values, a tenth of the call overhead on small arrays
    return np.minimum(np.maximum(v, lo), hi)


def _to_u8(unit: np.ndarray) -> np.ndarray:
    # [0, 1] float -> 0..255 uint8
    return np.rint(unit * 255.0).astype(np.uint8)


def _clean(g: np.ndarray, level: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Images on a uniform background, all at once: (M, H, W) uint8 or float32 and the (M,)
    background level -> (M, oh, ow) uint8.

    Works in uint8 where it can: an MNIST-style image (white ink at full strength on
    black) already is its own ink, and a batch of them costs a few passes over bytes.
    """
    m, h, w = g.shape
    oh, ow = out_hw
    gmax, gmin = g.max(axis=(1, 2)).astype(np.float32), g.min(axis=(1, 2)).astype(np.float32)  # (M,)
    light = gmax - level >= level - gmin  # light ink on a dark field (MNIST itself)
    # ink = (g - level) * sign * scale / div: dark ink is divided by the paper level, weak ink stretched
    scale = np.where(light, 1.0, 255.0 / np.maximum(level, 1.0)).astype(np.float32)
    peak = np.where(light, gmax - level, level - gmin) * scale
    div = np.where(peak >= FULL_INK, 255.0, np.maximum(peak, MIN_INK)).astype(np.float32)
    # white ink at full strength on black: the image is its own ink, nothing to compute
    same = (light & (level == 0) & (div == 255.0)) if g.dtype == np.uint8 else np.zeros(m, bool)
    if same.all():
        ink = g  # (M, H, W) uint8
    else:
        ink = np.empty((m, h, w), dtype=np.uint8)
        ink[same] = g[same]
        o = np.flatnonzero(~same)
        sign = np.where(light[o], 1.0, -1.0).astype(np.float32)
        diff = (g[o].astype(np.float32) - level[o, None, None]) * sign[:, None, None]  # levels above the background
        ink[o] = _to_u8(np.clip(diff * (scale[o] / div[o])[:, None, None], 0.0, 1.0) * (diff > 0.5))
    mask = ink > 0  # (M, H, W): a pixel is ink when it is off the background level
    rows, cols = np.asarray(mask.any(axis=2)), np.asarray(mask.any(axis=1))  # (M, H), (M, W) bool
    top, left = rows.argmax(axis=1), cols.argmax(axis=1)
    bottom, right = h - rows[:, ::-1].argmax(axis=1), w - cols[:, ::-1].argmax(axis=1)
    has_ink = (peak >= MIN_INK) & rows.any(axis=1)
    box = max(1, round(BOX_FRACTION * min(oh, ow)))
    direct = has_ink & (np.maximum(bottom - top, right - left) == box)  # already box-sized: no resampling
    out = np.zeros((m, oh, ow), dtype=np.uint8)
    for i in np.flatnonzero(has_ink & ~direct):
        # to be resized: crop where the strokes are, not where their blur fades out (as MNIST
        # boxed the strokes of the binary originals, before anti-aliasing)
        t, b, lft, rgt = bbox(ink[i] > EDGE_FRACTION * 255) or (top[i], bottom[i], left[i], right[i])
        out[i] = _to_u8(fit_and_centre(ink[i, t:b, lft:rgt] * np.float32(1 / 255), out_hw))
    d = np.flatnonzero(direct)
    if d.size:
        ink, top, bottom, left, right = ink[d], top[d], bottom[d], left[d], right[d]
        row_mass = ink.sum(axis=2, dtype=np.float32)  # (D, H)
        mass = row_mass.sum(axis=1)  # (D,)
        cy = row_mass @ np.arange(h, dtype=np.float32) / mass - top  # centre of mass in the crop
        cx = ink.sum(axis=1, dtype=np.float32) @ np.arange(w, dtype=np.float32) / mass - left
        new_top = _between(_round_half_even(oh / 2 - cy), 0, oh - (bottom - top))
        new_left = _between(_round_half_even(ow / 2 - cx), 0, ow - (right - left))
        # each crop pasted at its place (a copy of at most 20x20 bytes an image: cheaper, one by one, than
        # any vectorised gather for the few images of a server's batch, and as cheap for hundreds)
        places = zip(*(v.tolist() for v in (d, top, bottom, left, right, new_top, new_left)), strict=True)
        for j, (i, t, b, lft, rgt, y, x) in enumerate(places):
            out[i, y : y + b - t, x : x + rgt - lft] = ink[j, t:b, lft:rgt]
    return out


def mnist_digits(images: np.ndarray, out_hw: tuple[int, int] = (28, 28)) -> np.ndarray:
    """(N, H, W) greyscale in [0, 255], uint8 or float -> (N, oh, ow) uint8, white digits on black.

    Images on a uniform background (MNIST, drawings, clean scans) are processed
    together, vectorised; the others (photos) one by one.
    """
    g = images if images.dtype == np.uint8 else images.astype(np.float32)
    if g.shape[1] < 4 or g.shape[2] < 4:  # too small for a border ring: extend the edges
        g = np.pad(g, ((0, 0), (0, max(0, 4 - g.shape[1])), (0, max(0, 4 - g.shape[2]))), mode="edge")
    ring = np.concatenate((g[:, 0], g[:, -1], g[:, 1:-1, 0], g[:, 1:-1, -1]), axis=1)  # (N, 2H + 2W - 4)
    # uniform: nearly all of the border sits at exactly one level (the digit may touch the border)
    # and none of it is a level or three off, the mark of noise or JPEG compression
    level = median(ring, axis=1).astype(np.float32)  # (N,)
    dev = np.abs(ring.astype(np.float32) - level[:, None])
    same_level = (dev < 0.5).sum(axis=1) / ring.shape[1] >= UNIFORM_BORDER  # the share, as a mean
    uniform = same_level & ~((dev >= 0.5) & (dev < 4)).any(axis=1)
    out = np.zeros((len(g), *out_hw), dtype=np.uint8)
    u = np.flatnonzero(uniform)
    if u.size:
        out[u] = _clean(g[u] if u.size < len(g) else g, level[u], out_hw)
    for i in np.flatnonzero(~uniform) if u.size < len(g) else ():
        found = ink_image(g[i].astype(np.float32))
        if found is not None:  # else a blank page: it stays black, no division by zero
            ink, (t, b, lft, rgt) = found
            out[i] = _to_u8(fit_and_centre(ink[t:b, lft:rgt], out_hw))
    return out


def mnist_digit(image: np.ndarray, out_hw: tuple[int, int] = (28, 28)) -> np.ndarray:
    """(H, W) greyscale in [0, 255] -> (oh, ow) uint8, white digit on black."""
    return mnist_digits(image[None], out_hw)[0]
