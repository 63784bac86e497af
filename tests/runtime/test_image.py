"""Decoding and preprocessing on real image files made from real MNIST digits; no model, no torch."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cnnx.core.contract import normalise
from cnnx.core.errors import ImageError
from cnnx.core.idx import read_idx
from cnnx.runtime.digit import mnist_digit, mnist_digits
from cnnx.runtime.image import EncodedImage, open_image, preprocess, preprocess_batch, save_preprocessed
from cnnx.testing.photolike import marker_like, photo_like
from tests.support import DIGIT_SPEC

SPEC = DIGIT_SPEC


@pytest.fixture(scope="module")
def digits(mini_mnist):
    """The 500 real test digits of the mini MNIST, (500, 28, 28) uint8, and their labels."""
    return read_idx(mini_mnist / "t10k-images-idx3-ubyte.gz"), read_idx(mini_mnist / "t10k-labels-idx1-ubyte.gz")


def _close(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two (28, 28) images, best over placements within a pixel: 1 = same picture.

    A resampled digit's centre of mass can round to the next pixel; the model is
    trained with shifts of 2 pixels, so one pixel of placement is not a difference.
    """
    b = b.astype(float)
    return max(
        float(np.corrcoef(np.roll(a.astype(float), (dy, dx), (0, 1)).ravel(), b.ravel())[0, 1])
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
    )


def test_mnist_digits_pass_through_unchanged(digits):
    # an MNIST digit is already fitted and centred: the recipe must not move a pixel,
    # so infer on PNGs of test digits scores what eval on the IDX files scores
    images, _ = digits
    out = mnist_digits(images)
    same = (out == images).all(axis=(1, 2))
    assert same.mean() >= 0.99, np.flatnonzero(~same)
    # the only ones allowed to change are the few cut at the border (ink box not 20 pixels, or ink on the edge)
    for i in np.flatnonzero(~same):
        rows, cols = np.flatnonzero(images[i].any(1)), np.flatnonzero(images[i].any(0))
        long_side = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
        assert long_side != 20 or min(rows[0], cols[0]) == 0 or max(rows[-1], cols[-1]) == 27, i


@pytest.mark.parametrize("paper", [0, 255])
def test_a_digit_anywhere_on_a_larger_page_comes_back_to_its_mnist_pixels(digits, paper):
    # the digits of one batch, each at its own place on a larger page of one colour (light ink on black,
    # dark ink on white), a pixel from each edge in turn (ink on the edge itself, faint as MNIST's is,
    # makes a page look uneven): each is cut out and placed back where MNIST has it
    images, _ = digits
    kept = _unchanged(images)[:120]
    rng = np.random.default_rng(1)
    h, w = 45, 38
    pages = np.full((len(kept), h, w), paper, np.uint8)
    for n, i in enumerate(kept):
        rows, cols = np.flatnonzero(images[i].any(1)), np.flatnonzero(images[i].any(0))
        ink = images[i][rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        y = [1, h - ink.shape[0] - 1, int(rng.integers(1, h - ink.shape[0]))][n % 3]
        x = [w - ink.shape[1] - 1, 1, int(rng.integers(1, w - ink.shape[1]))][n % 3]
        pages[n, y : y + ink.shape[0], x : x + ink.shape[1]] = ink if paper == 0 else 255 - ink
    assert np.array_equal(mnist_digits(pages), images[kept])


def _unchanged(images: np.ndarray) -> np.ndarray:
    """Indices of the digits the recipe leaves as they are: ink box 20 pixels, off the border."""
    return np.flatnonzero((mnist_digits(images) == images).all(axis=(1, 2)))


def test_png_files_of_digits_decode_to_the_idx_pixels(digits, tmp_path):
    images, _ = digits
    paths = []
    for i in range(50):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(images[i]).save(paths[-1])
    got = np.stack(preprocess_batch(paths, SPEC))[:, 0]
    assert (got == images[:50]).all(axis=(1, 2)).mean() >= 0.98


@pytest.mark.parametrize(
    "kind",
    [
        "inverted-png",
        "rgb-jpeg",
        "rgba-canvas-black",
        "rgba-canvas-white",
        "palette",
        "16-bit",
        "la",
        "cmyk-jpeg",
        "scaled-off-centre",
        "uneven-light",
    ],
)
def test_every_kind_of_file_gives_the_digit(digits, tmp_path, kind):
    images, _ = digits
    for i in (0, 7, 42):
        d = images[i]
        ink = d.astype(np.float32) / 255  # (28, 28) ink coverage
        path = tmp_path / f"{kind}-{i}.png"
        if kind == "inverted-png":  # dark ink on white paper
            Image.fromarray(255 - d).save(path)
        elif kind == "rgb-jpeg":
            path = path.with_suffix(".jpg")
            Image.fromarray(255 - d).convert("RGB").resize((112, 112), Image.BICUBIC).save(path, quality=90)
        elif kind == "rgba-canvas-black":  # what a web canvas gives: black strokes, transparent elsewhere
            rgba = np.zeros((28, 28, 4), np.uint8)
            rgba[..., 3] = d
            Image.fromarray(rgba, "RGBA").save(path)
        elif kind == "rgba-canvas-white":  # white strokes drawn for a dark page, transparent elsewhere
            rgba = np.full((28, 28, 4), 255, np.uint8)
            rgba[..., 3] = d
            Image.fromarray(rgba, "RGBA").save(path)
        elif kind == "palette":
            Image.fromarray(255 - d).convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(path)
        elif kind == "16-bit":
            Image.fromarray(d.astype(np.uint16) * 257).save(path)  # 16-bit greyscale PNG
            assert Image.open(path).mode.startswith("I")
        elif kind == "la":
            Image.fromarray(np.stack([255 - d, np.full_like(d, 255)], -1), "LA").save(path)
        elif kind == "cmyk-jpeg":
            path = path.with_suffix(".jpg")
            Image.fromarray(255 - d).convert("RGB").convert("CMYK").resize((84, 84)).save(path, quality=92)
        elif kind == "scaled-off-centre":  # 4x larger, in a corner of a wide white page
            page = np.full((200, 300), 245, np.float32)
            big = np.asarray(Image.fromarray(d).resize((112, 112), Image.BILINEAR), np.float32) / 255
            page[70:182, 10:122] -= 200 * big
            Image.fromarray(page.round().astype(np.uint8)).save(path)
        elif kind == "uneven-light":  # light falling from 250 to 110 across the page, no noise
            light = np.linspace(250, 110, 84, dtype=np.float32)[None, :] * np.ones((84, 1), np.float32)
            big = np.asarray(Image.fromarray(d).resize((84, 84), Image.BILINEAR), np.float32) / 255
            Image.fromarray((light * (1 - 0.85 * big)).round().astype(np.uint8)).save(path)
        got = preprocess(path, SPEC)
        assert got.shape == (1, 28, 28) and got.dtype == np.uint8
        # the same file's bytes held in memory (an upload) decode to the same pixels
        assert np.array_equal(preprocess(EncodedImage(path.name, path.read_bytes()), SPEC), got), kind
        exact = kind in ("inverted-png", "rgba-canvas-black", "rgba-canvas-white", "16-bit", "la")
        if exact:
            assert np.abs(got[0].astype(int) - d).max() <= 1, kind
        else:
            assert _close(got[0], d) > 0.85, (kind, _close(got[0], d))
        del ink


def test_exif_orientation_is_applied(digits, tmp_path):
    d = 255 - digits[0][3]
    upright = Image.fromarray(d).convert("RGB").resize((96, 96))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what the camera wrote ...
    exif = Image.Exif()
    exif[0x0112] = 6  # ... and its note: rotate 90 degrees clockwise to view
    stored.save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    upright.save(tmp_path / "upright.jpg", quality=95)
    assert open_image(tmp_path / "rotated.jpg").size == (96, 96)
    a, b = preprocess(tmp_path / "rotated.jpg", SPEC)[0], preprocess(tmp_path / "upright.jpg", SPEC)[0]
    assert _close(a, b) > 0.95
    assert _close(a, digits[0][3]) > 0.85


@pytest.mark.parametrize("fill", [0, 255, 128])
def test_blank_pages_say_no_digit_without_dividing_by_zero(tmp_path, fill):
    # a model shown an all-black field still names a digit, often with 97%: refuse instead
    path = tmp_path / "blank.png"
    Image.new("L", (64, 48), fill).save(path)
    with np.errstate(all="raise"), pytest.raises(ImageError, match="blank.png: no digit found"):
        preprocess(path, SPEC)
    assert not mnist_digit(np.full((64, 48), fill, np.uint8)).any()  # the recipe itself gives black
    assert preprocess(path, SPEC, "plain").shape == (1, 28, 28)  # resizing alone has nothing to find
    rng = np.random.default_rng(0)  # pure noise, no digit: no crash, no warning
    noise = rng.normal(fill, 6, (64, 48)).clip(0, 255).astype(np.uint8)
    with np.errstate(divide="raise", invalid="raise"):
        try:
            assert preprocess(noise, SPEC).shape == (1, 28, 28)
        except ImageError as exc:
            assert "no digit found" in str(exc)


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (3, 400), (500, 4)])
def test_tiny_and_extreme_shapes(shape):
    a = np.zeros(shape, np.uint8)
    a[: max(1, shape[0] // 2), : max(1, shape[1] // 2)] = 255
    assert mnist_digit(a).shape == (28, 28)


def test_an_animated_gif_is_read_at_its_first_frame(digits, tmp_path):
    images, _ = digits
    frames = [Image.fromarray(255 - images[i]) for i in (0, 1, 2)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    assert Image.open(tmp_path / "a.gif").n_frames == 3
    assert _close(preprocess(tmp_path / "a.gif", SPEC)[0], images[0]) > 0.95


def test_photo_like_digits_come_out_like_mnist(digits):
    images, _ = digits
    rng = np.random.default_rng(3)
    scores = [_close(preprocess(photo_like(images[i], rng), SPEC)[0], images[i]) for i in range(20)]
    assert np.median(scores) > 0.85 and min(scores) > 0.6, scores


def test_heavy_marker_digits_large_in_the_frame_are_found(digits, tmp_path):
    """A thick marker digit filling much of a JPEG of evenly lit paper covers up to half the
    picture: it must not be taken for the background and the photo refused as blank."""
    images, _ = digits
    rng = np.random.default_rng(11)
    paths = []
    for i in range(40):
        paths.append(tmp_path / f"{i}.jpg")
        marker_like(images[i], rng).save(paths[-1], quality=int(rng.integers(75, 95)))
    results = preprocess_batch(paths, SPEC)
    refused = [str(r) for r in results if isinstance(r, ImageError)]
    assert not refused, refused
    scores = [_close(r[0], images[i]) for i, r in enumerate(results)]
    assert np.median(scores) > 0.7, scores  # the strokes are thicker than MNIST's: the shape must still match


def test_a_shadow_over_a_corner_does_not_take_the_crop(digits):
    images, _ = digits
    rng = np.random.default_rng(5)
    scores = []
    for i in range(10):
        photo = np.asarray(photo_like(images[i], rng), np.float32)
        h, w, _ = photo.shape
        yy, xx = np.mgrid[0:h, 0:w]
        shade = 1 - 0.5 * np.clip(1 - np.hypot(yy / h, xx / w) / 0.5, 0, 1)  # half as bright at the corner
        shaded = Image.fromarray((photo * shade[..., None]).clip(0, 255).astype(np.uint8))
        scores.append(_close(preprocess(shaded, SPEC)[0], images[i]))
    assert np.median(scores) > 0.85 and min(scores) > 0.6, scores


def test_plain_resizes_only(digits):
    d = 255 - digits[0][0]
    big = Image.fromarray(d).resize((56, 56), Image.BILINEAR)
    got = preprocess(big, SPEC, "plain")[0]
    assert got.mean() > 150  # still dark ink on white: no inversion, no cropping
    assert _close(got, d) > 0.95


def test_rgb_model_gets_three_channels():
    spec = SPEC.replace(input_shape=(3, 32, 32), color="RGB", mean=(0.5,) * 3, std=(0.25,) * 3, preprocess="resize")
    rgba = Image.new("RGBA", (50, 40), (255, 0, 0, 0))  # transparent: composited onto white
    px = preprocess(rgba, spec)
    assert px.shape == (3, 32, 32) and (px == 255).all()
    x = normalise(px[None], spec.mean, spec.std)
    assert x.dtype == np.float32 and np.allclose(x, (1 - 0.5) / 0.25)


def test_normalise_matches_the_training_formula():
    px = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16)
    x = normalise(px, SPEC.mean, SPEC.std)
    assert np.allclose(x, (px / 255 - 0.1307) / 0.3081, atol=1e-6)


def test_decompression_bombs_are_refused(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("L", (100, 100)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)  # 10,000 pixels is now a "bomb"
    with pytest.raises(ImageError, match="too large"):
        preprocess(path, SPEC)
    with pytest.raises(ImageError, match="^upload.png: too large"):
        preprocess(EncodedImage("upload.png", path.read_bytes()), SPEC)


@pytest.mark.parametrize(
    "content, reason",
    [(None, "no such file"), (b"", "empty file"), (b"just text\n", "not an image"), ("truncated", "truncated")],
)
def test_unreadable_files_name_the_file_and_the_reason(tmp_path, content, reason):
    path = tmp_path / "bad.png"
    if content == "truncated":
        Image.new("L", (64, 64), 255).save(path)
        path.write_bytes(path.read_bytes()[:60])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageError) as err:
        preprocess(path, SPEC)
    assert str(path) in str(err.value) and reason in str(err.value)
    if content is not None:  # the same bytes in memory: named by the name they came with
        with pytest.raises(ImageError) as err:
            preprocess(EncodedImage("upload", path.read_bytes()), SPEC)
        assert str(err.value).startswith("upload: ") and reason in str(err.value)


def test_save_preprocessed_writes_the_exact_pixels(digits, tmp_path):
    px = preprocess(digits[0][5], SPEC)
    out = save_preprocessed(px, tmp_path / "sub" / "five.png")
    assert (np.asarray(Image.open(out)) == px[0]).all()
