"""The ``mnist-digit`` recipe: a photo, scan or drawing of one digit -> what MNIST looks like.

MNIST was made by fitting each digit into a 20x20 box (aspect kept), then
placing it in a 28x28 field so that its centre of mass sits at the centre,
white ink on black. This module does the same to an arbitrary greyscale image:

1. estimate the background (a constant, or a smooth quadratic surface fitted
   robustly to block medians when the lighting is uneven);
2. decide the ink polarity from which side of the background the extreme
   pixels lie on, and turn the image into "ink contrast" (dark ink on light
   paper is divided by the local paper brightness, so shade does not matter);
3. subtract the noise floor and stretch the ink to full intensity;
4. crop to the ink (confident ink plus the faint halo around it, so specks of
   noise far from the digit do not widen the crop), fit the crop into the box,
   and shift it so its centre of mass lands on the centre of the field.

An image that is already an MNIST digit comes out unchanged (bar the rare
digit whose box is 19 pixels long), so PNGs of MNIST test digits score what
the IDX files score. numpy and Pillow only.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# Fraction of the output field the digit box takes: MNIST fits 20x20 into 28x28.
BOX_FRACTION = 20 / 28
# Below this much contrast (0-255 scale) the image holds no ink: output stays black.
MIN_INK = 8.0
# Confident ink is at least this fraction of the ink level; fainter pixels only count
# when they lie next to confident ink (the anti-aliased edge of a stroke).
CONFIDENT_FRACTION = 0.3
# Uniform-background test: when this fraction of the border ring has one grey level, the
# background is clean (synthetic images, canvas drawings, MNIST) and the rest of the ring
# is ink touching the border. Anything noisier takes the general path.
UNIFORM_BORDER = 0.9
# Ink whose level is at least this (0-255) counts as full white and is not stretched.
FULL_INK = 250.0
# The noise floor of a photo: this many noise standard deviations above the background.
NOISE_SIGMAS = 3.0
# A photo's digit ends where its ink falls below this fraction of full strength.
EDGE_FRACTION = 0.2
_MAD_TO_SIGMA = 1.4826  # median absolute deviation -> standard deviation for Gaussian noise


def _median(a: np.ndarray, axis: int | None = None) -> np.ndarray:
    """The upper middle element along ``axis`` (the whole array when None).

    np.median would do, but its first call imports numpy.ma, a noticeable part of
    `cnnx infer`'s start-up; for robust statistics the upper middle is as good.
    """
    if axis is None:
        a, axis = a.ravel(), 0
    k = a.shape[axis] // 2
    return np.take(np.partition(a, k, axis=axis), k, axis=axis)


def _sample(a: np.ndarray, n: int = 16384) -> tuple[np.ndarray, int]:
    # every k-th pixel each way, about n of them: medians of 100k pixels cost milliseconds, of 16k little
    k = max(1, int(np.sqrt(a.size / n)))
    return a[::k, ::k], k


def _block_medians(g: np.ndarray, grid: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median of each block of a grid x grid tiling; returns (medians, block-centre y, x)."""
    h, w = g.shape
    small, k = _sample(g)
    bh, bw = max(1, small.shape[0] // grid), max(1, small.shape[1] // grid)
    gh, gw = small.shape[0] // bh, small.shape[1] // bw
    blocks = small[: gh * bh, : gw * bw].reshape(gh, bh, gw, bw).transpose(0, 2, 1, 3).reshape(gh, gw, -1)
    bh, bw = bh * k, bw * k  # back to full-size pixels for the block centres
    med = _median(blocks, axis=2)  # (gh, gw)
    yy, xx = np.meshgrid((np.arange(gh) + 0.5) * bh, (np.arange(gw) + 0.5) * bw, indexing="ij")
    return med.ravel(), yy.ravel(), xx.ravel()


def _quadratic_terms(y: np.ndarray, x: np.ndarray, h: int, w: int) -> np.ndarray:
    # coordinates scaled to [-1, 1] keep the least-squares problem well conditioned
    v, u = np.broadcast_arrays(y / h * 2 - 1, x / w * 2 - 1)
    return np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=-1)


def background_surface(g: np.ndarray) -> np.ndarray:
    """A smooth (H, W) estimate of the background under uneven lighting.

    Block medians see the paper, not the thin strokes; a quadratic surface fitted
    to them, refitted without the blocks it fits worst (those the digit covers),
    follows gradients and vignetting without following the digit.
    """
    h, w = g.shape
    med, yy, xx = _block_medians(g)
    terms = _quadratic_terms(yy, xx, h, w)  # (blocks, 6)
    keep = np.ones(len(med), dtype=bool)
    for _ in range(3):
        coef, *_ = np.linalg.lstsq(terms[keep], med[keep], rcond=None)
        resid = med - terms @ coef
        spread = _MAD_TO_SIGMA * _median(np.abs(resid[keep] - _median(resid[keep])))
        new_keep = np.abs(resid) <= max(2.5 * spread, 2.0)
        if new_keep.sum() < 6 or np.array_equal(new_keep, keep):
            break
        keep = new_keep
    ys = np.arange(h, dtype=np.float32) + 0.5
    xs = np.arange(w, dtype=np.float32) + 0.5
    full = _quadratic_terms(ys[:, None], xs[None, :], h, w)  # (H, W, 6)
    return (full @ coef.astype(np.float32)).astype(np.float32)


def ink_contrast(g: np.ndarray) -> np.ndarray:
    """(H, W) float32 ink contrast in 0-255 units (ink positive, background near 0) of an
    image whose background is not uniform: lit unevenly, noisy, or with ink at the border."""
    some = _sample(g)[0]
    mode = float(_median(some))
    if np.mean(some == mode) >= 0.5:
        bg = np.full_like(g, mode)  # half the picture at one exact level: a flat, synthetic background
    else:
        bg = background_surface(g)
    r = g - bg
    flat = _sample(r)[0].ravel()
    k = max(1, flat.size // 100)
    part = np.partition(flat, (k, flat.size - 1 - k))
    p1, p99 = float(part[k]), float(part[flat.size - 1 - k])
    if p99 >= -p1:
        return r  # the extreme pixels are brighter than the background: light ink
    # dark ink: divide by the local paper brightness, so a stroke in shade is as strong
    # as one in the light (reflectance, not brightness)
    return -r * (255.0 / np.maximum(bg, 16.0))


def _box3(a: np.ndarray) -> np.ndarray:
    # 3x3 box mean with edge replication, (H, W) -> (H, W)
    p = np.pad(a, 1, mode="edge")
    s = p[:-2] + p[1:-1] + p[2:]
    return (s[:, :-2] + s[:, 1:-1] + s[:, 2:]) / 9.0


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    rows, cols = mask.any(axis=1), mask.any(axis=0)
    if not rows.any():
        return None
    top, left = int(rows.argmax()), int(cols.argmax())
    bottom = len(rows) - int(rows[::-1].argmax())
    right = len(cols) - int(cols[::-1].argmax())
    return top, bottom, left, right


def _stretch(c: np.ndarray, level: float) -> np.ndarray:
    # ink at `level` -> 1.0; ink already at (nearly) full white is left as it is, so an
    # MNIST digit (which peaks at 254 or 255) passes through unchanged
    return np.clip(c * (1.0 / (255.0 if level >= FULL_INK else level)), 0.0, 1.0)


def ink_image(g: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
    """One image with a non-uniform background: ink in [0, 1] (H, W) float32 and its
    crop box (top, bottom, left, right); None when it holds no ink."""
    c = ink_contrast(g)
    some = _sample(c)[0]
    centre = float(_median(some))
    sigma = _MAD_TO_SIGMA * float(_median(np.abs(some - centre)))
    floor = max(centre, 0.0) + NOISE_SIGMAS * sigma  # above this it is ink, not noise
    smooth = _box3(c)  # noise / 3 for white noise; strokes keep their level
    peak = float(smooth.max())
    if peak - floor < MIN_INK:
        return None
    confident = smooth > floor + CONFIDENT_FRACTION * (peak - floor)
    core = _bbox(confident)
    if core is None:
        return None
    # the level that becomes full white: the strokes' median (a photo's maximum is a noise spike)
    level = float(_median(c[confident]))
    # below the floor is noise and goes; above it ink keeps its proportion, so the
    # anti-aliased edges of the strokes keep their weight
    ink = _stretch(np.where(c > floor, c, 0.0), max(level, MIN_INK))
    # crop: the confident ink grown by a halo that takes in the strokes' faint edges but
    # not the specks of noise elsewhere on the page
    halo = max(1, round(0.02 * max(g.shape)))
    t, b, l, r = core
    t, l = max(0, t - halo), max(0, l - halo)
    b, r = min(g.shape[0], b + halo), min(g.shape[1], r + halo)
    inner = _bbox(ink[t:b, l:r] > EDGE_FRACTION)
    if inner is None:
        return None
    return ink, (t + inner[0], t + inner[1], l + inner[2], l + inner[3])


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
    # rounding to 6 places first keeps a half-pixel tie (MNIST has many) from becoming a shift
    return np.round(np.round(v, 6)).astype(np.int64)


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
    rows, cols = mask.any(axis=2), mask.any(axis=1)  # (M, H), (M, W)
    top, left = rows.argmax(axis=1), cols.argmax(axis=1)
    bottom, right = h - rows[:, ::-1].argmax(axis=1), w - cols[:, ::-1].argmax(axis=1)
    has_ink = (peak >= MIN_INK) & rows.any(axis=1)
    box = max(1, round(BOX_FRACTION * min(oh, ow)))
    direct = has_ink & (np.maximum(bottom - top, right - left) == box)  # already box-sized: no resampling
    out = np.zeros((m, oh, ow), dtype=np.uint8)
    for i in np.flatnonzero(has_ink & ~direct):
        # to be resized: crop where the strokes are, not where their blur fades out (as MNIST
        # boxed the strokes of the binary originals, before anti-aliasing)
        t, b, l, r = _bbox(ink[i] > EDGE_FRACTION * 255) or (top[i], bottom[i], left[i], right[i])
        out[i] = _to_u8(fit_and_centre(ink[i, t:b, l:r] * np.float32(1 / 255), out_hw))
    d = np.flatnonzero(direct)
    if d.size:
        ink, top, bottom, left, right = ink[d], top[d], bottom[d], left[d], right[d]
        row_mass = ink.sum(axis=2, dtype=np.float32)  # (D, H)
        mass = row_mass.sum(axis=1)  # (D,)
        cy = row_mass @ np.arange(h, dtype=np.float32) / mass - top  # centre of mass in the crop
        cx = ink.sum(axis=1, dtype=np.float32) @ np.arange(w, dtype=np.float32) / mass - left
        new_top = np.clip(_round_half_even(oh / 2 - cy), 0, oh - (bottom - top))
        new_left = np.clip(_round_half_even(ow / 2 - cx), 0, ow - (right - left))
        # gather: output row y shows input row y - new_top + top, inside the crop only
        ys = np.arange(oh)[None, :] - new_top[:, None] + top[:, None]  # (D, oh)
        xs = np.arange(ow)[None, :] - new_left[:, None] + left[:, None]  # (D, ow)
        vy = (ys >= top[:, None]) & (ys < bottom[:, None])
        vx = (xs >= left[:, None]) & (xs < right[:, None])
        picked = ink[np.arange(d.size)[:, None, None], np.clip(ys, 0, h - 1)[:, :, None], np.clip(xs, 0, w - 1)[:, None, :]]
        out[d] = picked * (vy[:, :, None] & vx[:, None, :])
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
    level = _median(ring, axis=1).astype(np.float32)  # (N,)
    dev = np.abs(ring.astype(np.float32) - level[:, None])
    uniform = ((dev < 0.5).mean(axis=1) >= UNIFORM_BORDER) & ~((dev >= 0.5) & (dev < 4)).any(axis=1)
    out = np.zeros((len(g), *out_hw), dtype=np.uint8)
    u = np.flatnonzero(uniform)
    if u.size:
        out[u] = _clean(g[u] if u.size < len(g) else g, level[u], out_hw)
    for i in np.flatnonzero(~uniform):
        found = ink_image(g[i].astype(np.float32))
        if found is not None:  # else a blank page: it stays black, no division by zero
            ink, (t, b, l, r) = found
            out[i] = _to_u8(fit_and_centre(ink[t:b, l:r], out_hw))
    return out


def mnist_digit(image: np.ndarray, out_hw: tuple[int, int] = (28, 28)) -> np.ndarray:
    """(H, W) greyscale in [0, 255] -> (oh, ow) uint8, white digit on black."""
    return mnist_digits(image[None], out_hw)[0]
