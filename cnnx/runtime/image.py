"""Load an image safely and turn it into the model's input, as the model spec says.

Decoding runs with Pillow's decompression-bomb limit as a hard error, EXIF
orientation applied, and every mode Pillow reads (greyscale, RGB, RGBA,
palette, 16-bit, CMYK ...) brought to 8-bit. The preprocessing recipe is the
one the spec names (``mnist-digit`` or ``resize``); ``plain`` forces ``resize``.

The recipes return uint8 (C, H, W) pixels, exactly what ``--save-preprocessed``
writes; ``cnnx.core.contract.normalise`` turns a batch of them into the float32 model input.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnx.core.contract import first_line
from cnnx.core.errors import ImageError
from cnnx.core.fileio import atomic_write
from cnnx.core.spec import ModelSpec
from cnnx.runtime.digit import mnist_digits

# Long side, in pixels, a large photo is reduced to before the digit recipe: the digit
# ends up 20 pixels tall, so this keeps detail for a digit a tenth of the frame tall.
WORK_SIZE = 320
RECIPE_NAMES = ("mnist-digit", "resize")


@dataclass(frozen=True)
class EncodedImage:
    """An image file's bytes held in memory (an upload, a message), and the name it goes by.

    Decoded by the same code as a file on disk, with no file written: same limits, same errors
    (each naming ``name``)."""

    name: str
    data: bytes


ImageSource = str | Path | Image.Image | np.ndarray | EncodedImage


def source_name(source: ImageSource) -> str:
    if isinstance(source, EncodedImage):
        return source.name
    return str(source) if isinstance(source, (str, Path)) else f"<{type(source).__name__}>"


def open_image(source: ImageSource, draft_size: int | None = None) -> Image.Image:
    """A decoded, upright Pillow image; raises ImageError naming the file and the reason.

    ``draft_size``: let JPEG decode at a reduced scale whose long side stays >= it.
    """
    with _decoding():
        return _open(source, draft_size)


@contextmanager
def _decoding() -> Iterator[None]:
    """Pillow's warnings while decoding: the decompression-bomb warning an error, the rest silent.

    Pillow warns about damaged metadata (EXIF, ICC, text chunks) while the pixels are fine: that
    would be lines of noise on the CLI's stderr. Entered once for a whole batch (``preprocess_batch``):
    per image it cost 2-3 us of the 25 us a 28x28 PNG takes to decode.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that; refuse both
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def _open(source: ImageSource, draft_size: int | None) -> Image.Image:
    """``open_image`` within ``_decoding()``."""
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        return _from_array(source)
    try:
        if isinstance(source, EncodedImage):
            im = _read(io.BytesIO(source.data), draft_size)
        else:
            # the file is opened here, not by Pillow: Pillow leaves it open when a decoder fails
            # part-way, which over a folder of broken files would run out of file handles
            with open(source, "rb") as fp:  # a str is opened as it is: pathlib costs microseconds a file
                im = _read(fp, draft_size)
    except Exception as exc:  # every decoder failure becomes one line naming the file
        raise _unreadable(source, exc) from None
    return _upright(im)


def _read(fp: BinaryIO, draft_size: int | None) -> Image.Image:
    """Decode the first frame of the open file ``fp`` with Pillow's pixel limit as a hard error."""
    im = Image.open(fp)
    if Image.MAX_IMAGE_PIXELS and im.width * im.height > Image.MAX_IMAGE_PIXELS:
        # checked again here: catch_warnings is not thread-safe, and callers decode in threads
        raise Image.DecompressionBombError(f"{im.width}x{im.height}")
    if draft_size and im.format == "JPEG" and max(im.size) > 2 * draft_size:
        r = draft_size / max(im.size)
        im.draft(None, (max(1, int(im.size[0] * r)), max(1, int(im.size[1] * r))))
    im.load()  # the first frame of an animation: what a viewer shows first
    return im


def _unreadable(source: str | Path | EncodedImage, exc: Exception) -> ImageError:
    """The one-line ImageError for a file that ``_read`` could not decode."""
    path = source_name(source)
    if isinstance(exc, FileNotFoundError):
        return ImageError(f"{path}: no such file")
    if isinstance(exc, IsADirectoryError):
        return ImageError(f"{path}: is a folder, not an image")
    if isinstance(exc, PermissionError):
        return ImageError(f"{path}: permission denied")
    if isinstance(exc, UnidentifiedImageError):
        if isinstance(source, EncodedImage):
            empty = not source.data
        else:
            empty = Path(source).is_file() and Path(source).stat().st_size == 0
        return ImageError(f"{path}: {'empty file' if empty else 'not an image Pillow can read'}")
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        limit = f"over {Image.MAX_IMAGE_PIXELS:,} pixels"
        return ImageError(f"{path}: too large to decode safely ({limit})", "shrink it first")
    if isinstance(exc, MemoryError):
        return ImageError(f"{path}: too large to decode in the memory available", "shrink it first")
    if isinstance(exc, (OSError, SyntaxError, ValueError, EOFError)):
        return ImageError(f"{path}: corrupt or truncated image ({first_line(exc, 200)})")
    # Pillow's parsers meet hostile bytes with TypeError, IndexError, struct.error ...
    return ImageError(f"{path}: corrupt image ({type(exc).__name__}: {first_line(exc, 200)})")


def _upright(im: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says; as stored when there is none, or it is broken."""
    if "exif" in im.info or "Raw profile type exif" in im.info or im.format in ("TIFF", "MPO"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ImageOps.exif_transpose(im, in_place=True)
        except Exception:  # a broken EXIF block should not cost the picture: keep it as stored
            pass
    return im


def _from_array(a: np.ndarray) -> Image.Image:
    """An (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array as an image; floats in [0, 1] or [0, 255]."""
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or a.size == 0:
        raise ImageError(f"an array of shape {a.shape} is not an image", "give (H, W), (H, W, 3) or (H, W, 4)")
    if a.dtype != np.uint8:
        # float64 first: a float32 cast of a huge value overflows (and warns); NaN is no light, inf full light
        f = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        if f.size and float(f.max()) <= 1.0:
            f = np.clip(f, 0.0, 1.0) * 255.0
        a = np.clip(f, 0, 255).round().astype(np.uint8)
    return Image.fromarray(a)


def _eight_bit(im: Image.Image) -> Image.Image:
    """16-bit and 32-bit greyscale ("I;16", "I", "F") scaled to "L" by their value range."""
    a = np.asarray(im)
    if a.dtype == np.uint16 or im.mode.startswith("I;16"):
        g = a.astype(np.float32) / 257.0  # 65535 -> 255
    elif im.mode == "F":
        g = a.astype(np.float32)
        g = g * 255.0 if g.size and float(np.nanmax(g)) <= 1.0 else g
    else:  # "I": 32-bit ints, usually a 16-bit file
        g = a.astype(np.float32)
        g = g / 257.0 if g.size and float(g.max()) > 255 else g
    return Image.fromarray(np.clip(np.nan_to_num(g), 0, 255).round().astype(np.uint8), mode="L")


def _with_alpha(im: Image.Image) -> Image.Image | None:
    """The image as "LA" when it has a (not fully opaque) alpha channel, else None."""
    if im.mode == "P":
        if "transparency" not in im.info:
            return None
        im = im.convert("RGBA")
    if im.mode in ("RGBa", "La"):
        im = im.convert(im.mode[0] + ("GBA" if im.mode == "RGBa" else "A"))
    if im.mode not in ("RGBA", "LA", "PA"):
        return None
    la = im.convert("LA")
    lo, _ = cast("tuple[int, int]", la.getchannel("A").getextrema())  # (min, max) alpha of a one-band image
    return la if lo < 255 else None


def to_grey(im: Image.Image) -> np.ndarray:
    """(H, W) uint8 or float32 in [0, 255]; transparent pixels composited onto a background the ink stands out on.

    A canvas drawing has opaque ink on a transparent background whose hidden colour
    is arbitrary; compositing onto white (for dark ink) or black (for light ink)
    keeps the ink visible whatever colour it was drawn in.
    """
    if im.mode == "L":
        return np.asarray(im)  # the common case (scans, MNIST-style PNGs): no conversion at all
    la = _with_alpha(im)
    if la is not None:
        a = np.asarray(la, dtype=np.float32)  # (H, W, 2): luminance, alpha
        lum, alpha = a[..., 0], a[..., 1] * (1.0 / 255.0)
        opaque = alpha > 0.5
        ink_level = float(lum[opaque].mean()) if opaque.any() else 0.0
        paper = 255.0 if ink_level < 128 else 0.0
        return lum * alpha + paper * (1.0 - alpha)
    if im.mode.startswith("I") or im.mode == "F":
        im = _eight_bit(im)
    elif im.mode not in ("L", "RGB"):
        im = im.convert("RGB")  # palette, CMYK, YCbCr, 1-bit ...: Pillow knows the way to RGB
    if im.mode != "L":
        im = im.convert("L")  # ITU-R 601 luma
    return np.asarray(im)


def to_color(im: Image.Image, color: str) -> Image.Image:
    """The image in the spec's colour mode ("L" or "RGB"); alpha composited onto white, as viewers show it."""
    if im.mode.startswith("I") or im.mode == "F":
        im = _eight_bit(im)
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba)
    return im if im.mode == color else im.convert(color)


def _shrink(im: Image.Image, size: int) -> Image.Image:
    # large photos: box-filter down to about `size` on the long side (fast, anti-aliased)
    w, h = im.size
    if max(w, h) <= size:
        return im
    r = size / max(w, h)
    return im.resize((max(1, round(w * r)), max(1, round(h * r))), Image.Resampling.BOX)


def _resolve_recipe(spec: ModelSpec, recipe: str | None) -> str:
    name = spec.preprocess if recipe is None else ("resize" if recipe == "plain" else recipe)
    if name not in RECIPE_NAMES:
        raise ImageError(f"unknown preprocessing {recipe!r}", f"choose one of: {', '.join(RECIPE_NAMES)}, plain")
    return name


def _decode(source: ImageSource, spec: ModelSpec, digit: bool) -> np.ndarray:
    """Digit recipe: (H, W) grey (uint8, or float32 after compositing) at working size; resize recipe:
    the final uint8 (C, H, W)."""
    channels, h, w = spec.input_shape
    im = _open(source, WORK_SIZE if digit else max(h, w))
    try:
        if digit:
            return to_grey(_shrink(im, WORK_SIZE))
        a = np.asarray(to_color(im, spec.color).resize((w, h), Image.Resampling.BILINEAR), dtype=np.uint8)
    except MemoryError:
        raise ImageError(f"{source_name(source)}: too large to convert in the memory available") from None
    except Exception as exc:  # e.g. a mode Pillow cannot convert, a truncated frame
        raise ImageError(f"{source_name(source)}: cannot convert this image ({first_line(exc, 200)})") from None
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def preprocess_batch(
    sources: Sequence[ImageSource], spec: ModelSpec, recipe: str | None = None
) -> list[np.ndarray | ImageError]:
    """Images -> for each, uint8 (C, H, W) as the model expects it (before normalisation), or the
    ImageError that stopped it. ``recipe``: None = the spec's, or "mnist-digit", "resize", "plain".

    Digit images of one size are preprocessed together (vectorised); see cnnx.runtime.digit.
    """
    name = _resolve_recipe(spec, recipe)
    digit = name == "mnist-digit"
    results: list[np.ndarray | ImageError] = []
    with _decoding():
        for source in sources:
            try:
                results.append(_decode(source, spec, digit))
            except ImageError as exc:
                results.append(exc)
    if digit:
        channels, h, w = spec.input_shape
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, r in enumerate(results):
            if isinstance(r, np.ndarray):
                by_shape.setdefault(r.shape, []).append(i)
        for members in by_shape.values():
            done = mnist_digits(np.stack([cast(np.ndarray, results[i]) for i in members]), (h, w))  # (n, H, W) uint8
            inked = cast("list[bool]", done.reshape(len(done), -1).any(axis=1).tolist())
            for i, px, ink in zip(members, done, inked, strict=False):
                # a blank page comes out all black, and a model asked about a black field still names a
                # digit, often confidently: say there is none instead of guessing
                results[i] = (
                    (px[None] if channels == 1 else np.repeat(px[None], channels, axis=0))
                    if ink
                    else ImageError(
                        f"{source_name(sources[i])}: no digit found (the image is blank: nothing "
                        "stands out from the background)"
                    )
                )
    return results


def preprocess(source: ImageSource, spec: ModelSpec, recipe: str | None = None) -> np.ndarray:
    """One image -> uint8 (C, H, W) as the model expects it; raises ImageError."""
    (result,) = preprocess_batch([source], spec, recipe)
    if isinstance(result, ImageError):
        raise result
    return result


def save_preprocessed(pixels: np.ndarray, path: Path) -> Path:
    """Write uint8 (C, H, W) as a PNG (greyscale or RGB): exactly the pixels the model saw."""
    img = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))
    try:
        return atomic_write(path, lambda f: img.save(f, format="PNG"))
    except OSError as exc:
        raise ImageError(f"cannot write {path}: {exc}") from None
