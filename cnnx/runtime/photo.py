"""The general path of the ``mnist-digit`` recipe: photos and scans, one image at a time.

A photo of a digit on paper has a background that is neither uniform nor clean:
light falls off across the page, the sensor adds noise, JPEG adds ringing. This
module finds the ink anyway:

1. the background: a constant when half the picture sits at one exact level,
   else a smooth quadratic surface fitted robustly to block medians (it follows
   gradients and vignetting, not the thin strokes);
2. the polarity, from which side of the background the extreme pixels lie on;
   dark ink on paper becomes contrast divided by the local paper brightness, so a
   stroke in shade is as strong as one in the light;
3. the noise floor (3 sigma of the background, from the median absolute
   deviation): below it goes, above it ink keeps its proportion, stretched so the
   strokes' median is full white;
4. the crop: confident ink (on a 3x3-smoothed copy, where noise is a third),
   less what runs along the image border (a table, a shadow, the page edge),
   grown by a small halo, so specks of noise elsewhere on the page do not widen it.

numpy only; statistics on a subsample, so a 320-pixel photo costs milliseconds.
"""

from __future__ import annotations

import numpy as np

# Below this much contrast (0-255 scale) the image holds no ink: output stays black.
MIN_INK = 8.0
# Ink whose level is at least this (0-255) counts as full white and is not stretched.
FULL_INK = 250.0
# A resized digit ends where its ink falls below this fraction of full strength.
EDGE_FRACTION = 0.2
# Confident ink is at least this fraction of the way from the noise floor to the peak.
CONFIDENT_FRACTION = 0.3
# The noise floor of a photo: this many noise standard deviations above the background.
NOISE_SIGMAS = 3.0
_MAD_TO_SIGMA = 1.4826  # median absolute deviation -> standard deviation for Gaussian noise


def median(a: np.ndarray, axis: int | None = None) -> np.ndarray:
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
    med = median(blocks, axis=2)  # (gh, gw)
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
    # start from a flat paper level, not from a fit to every block: a heavy digit that covers
    # many blocks (a marker stroke, the digit large in the frame) would tilt a first least-squares
    # fit towards the ink, and the refits from there. The level is the median of the outer ring of
    # blocks: a digit may cover half of all blocks, but it touches the border only here and there
    ring = (yy == yy.min()) | (yy == yy.max()) | (xx == xx.min()) | (xx == xx.max())
    resid = med - float(median(med[ring]))
    start_spread = _MAD_TO_SIGMA * float(median(np.abs(resid[ring])))
    keep = np.abs(resid) <= max(2.5 * start_spread, 2.0)
    if keep.sum() < 6:
        keep = np.ones(len(med), dtype=bool)
    for _ in range(3):
        coef, *_ = np.linalg.lstsq(terms[keep], med[keep], rcond=None)
        resid = med - terms @ coef
        spread = _MAD_TO_SIGMA * median(np.abs(resid[keep] - median(resid[keep])))
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
    mode = float(median(some))
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
    # (the paper level is floored at a quarter of its typical level: where the fitted surface
    # dips below that, it is not paper that is dark there)
    return -r * (255.0 / np.maximum(bg, max(16.0, 0.25 * float(median(_sample(bg)[0])))))


def _box3(a: np.ndarray) -> np.ndarray:
    # 3x3 box mean with edge replication, (H, W) -> (H, W)
    p = np.pad(a, 1, mode="edge")
    s = p[:-2] + p[1:-1] + p[2:]
    return (s[:, :-2] + s[:, 1:-1] + s[:, 2:]) / 9.0


def bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of the True pixels of (H, W) ``mask``, bottom/right exclusive."""
    rows, cols = np.asarray(mask.any(axis=1)), np.asarray(mask.any(axis=0))  # (H,), (W,) bool
    if not rows.any():
        return None
    top, left = int(rows.argmax()), int(cols.argmax())
    bottom = len(rows) - int(rows[::-1].argmax())
    right = len(cols) - int(cols[::-1].argmax())
    return top, bottom, left, right


def _long_runs(line: np.ndarray, min_len: int) -> np.ndarray:
    """(L,) bool -> (L,) bool: only the runs of True at least ``min_len`` long."""
    edges = np.diff(np.concatenate(([0], line.astype(np.int8), [0])))
    out = np.zeros(len(line), dtype=bool)
    for start, end in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=False):
        if end - start >= min_len:
            out[start:end] = True
    return out


def border_blobs(mask: np.ndarray) -> np.ndarray:
    """The parts of ``mask`` (H, W) connected to a long stretch of the image border.

    In a photo those are the table, a shadow or the page edge, not the digit: a digit
    touches the border over a stroke's width at most, these along 15% of a side or more.
    """
    h, w = mask.shape
    seeds = np.zeros_like(mask)
    seeds[0] |= _long_runs(mask[0], max(4, int(0.15 * w)))
    seeds[-1] |= _long_runs(mask[-1], max(4, int(0.15 * w)))
    seeds[:, 0] |= _long_runs(mask[:, 0], max(4, int(0.15 * h)))
    seeds[:, -1] |= _long_runs(mask[:, -1], max(4, int(0.15 * h)))
    reach = seeds
    for _ in range(h + w):  # grow through the mask, 4-connected, until nothing changes
        grown = reach.copy()
        grown[1:] |= reach[:-1]
        grown[:-1] |= reach[1:]
        grown[:, 1:] |= reach[:, :-1]
        grown[:, :-1] |= reach[:, 1:]
        grown &= mask
        if np.array_equal(grown, reach):
            break
        reach = grown
    return reach


def _stretch(c: np.ndarray, level: float) -> np.ndarray:
    # ink at `level` -> 1.0; ink already at (nearly) full white is left as it is, so an
    # MNIST digit (which peaks at 254 or 255) passes through unchanged
    return np.clip(c * (1.0 / (255.0 if level >= FULL_INK else level)), 0.0, 1.0)


def _noise_floor(values: np.ndarray) -> float:
    """The level above which contrast is ink, not noise: the background's median plus 3 sigma
    (from the median absolute deviation)."""
    centre = float(median(values))
    sigma = _MAD_TO_SIGMA * float(median(np.abs(values - centre)))
    return max(centre, 0.0) + NOISE_SIGMAS * sigma


def ink_image(g: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
    """One image with a non-uniform background: ink in [0, 1] (H, W) float32 and its
    crop box (top, bottom, left, right); None when it holds no ink."""
    c = ink_contrast(g)
    smooth = _box3(c)  # noise / 3 for white noise; strokes keep their level
    peak = float(smooth.max())
    some = _sample(c)[0]
    floor = _noise_floor(some)
    if peak - floor < MIN_INK:
        # a heavy marker digit large in the frame can cover half of the picture and pass for
        # noise: the same statistics once more without the strokes' core
        quiet = some[some < 0.5 * peak]
        floor = _noise_floor(quiet) if quiet.size >= some.size // 4 else floor
    if peak - floor < MIN_INK:
        return None
    confident = smooth > floor + CONFIDENT_FRACTION * (peak - floor)
    digit = confident & ~border_blobs(confident)  # not the table or the page edge
    if digit.any():
        confident = digit
    core = bbox(confident)
    if core is None:
        return None
    # the level that becomes full white: the strokes' median (a photo's maximum is a noise spike)
    level = float(median(c[confident]))
    # below the floor is noise and goes; above it ink keeps its proportion, so the
    # anti-aliased edges of the strokes keep their weight
    ink = _stretch(np.where(c > floor, c, 0.0), max(level, MIN_INK))
    # crop: the confident ink grown by a halo that takes in the strokes' faint edges but
    # not the specks of noise elsewhere on the page
    halo = max(1, round(0.02 * max(g.shape)))
    t, b, lft, rgt = core
    t, lft = max(0, t - halo), max(0, lft - halo)
    b, rgt = min(g.shape[0], b + halo), min(g.shape[1], rgt + halo)
    inner = bbox(ink[t:b, lft:rgt] > EDGE_FRACTION)
    if inner is None:
        return None
    return ink, (t + inner[0], t + inner[1], lft + inner[2], lft + inner[3])
