"""Property-based fuzzing of image loading and preprocessing: only cnnx's own ImageError may escape.

Inputs: random bytes, valid PNG/JPEG/GIF/BMP/TIFF files with bytes flipped, inserted,
deleted or cut off, and random arrays and Pillow images of every mode and of sizes down to
1x1, through both recipes (``mnist-digit`` and ``resize``). Each example runs under an alarm
(a hang fails it) and with numpy raising on division by zero and invalid operations.

The default suite runs a few hundred examples; ``python bench/fuzz_images.py --examples
10000`` runs the same properties at length and records the result in docs/bad-inputs.md.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from cnnx.core.errors import CnnxError
from cnnx.core.spec import ModelSpec
from cnnx.runtime.image import preprocess, preprocess_batch
from tests.support import DIGIT_SPEC

DIGIT = DIGIT_SPEC
RGB = DIGIT.replace(input_shape=(3, 32, 32), color="RGB", mean=(0.5,) * 3, std=(0.25,) * 3, preprocess="resize")
SPECS = (DIGIT, RGB)
HANG_SECONDS = 20  # far above the slowest legitimate example (a large JPEG within Pillow's limit: ~1 s)
# Per-example budget hypothesis enforces (it re-runs a slow example to confirm before failing).
DEADLINE = timedelta(seconds=5)
EXAMPLES = int(os.environ.get("CNNX_FUZZ_EXAMPLES", "0")) or None  # set by bench/fuzz_images.py
MODES = ("1", "L", "P", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "I", "F", "I;16", "LA", "PA", "RGBa", "La")


class Hang(Exception):
    """An example that ran past HANG_SECONDS."""


@contextmanager
def guarded() -> Iterator[None]:
    """Fail on a hang (SIGALRM), on numpy dividing by zero or computing an invalid value, and on
    any warning (it would reach `cnnx infer`'s stderr as lines of noise)."""

    def alarm(signum: int, frame: object) -> None:
        raise Hang(f"no answer within {HANG_SECONDS} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(HANG_SECONDS)
    try:
        with np.errstate(divide="raise", invalid="raise"), warnings.catch_warnings():
            warnings.simplefilter("error")
            yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def check(source: object, spec: ModelSpec) -> None:
    """Preprocess ``source``: either the model's uint8 (C, H, W) input or a CnnxError, nothing else."""
    with guarded():
        try:
            px = preprocess(source, spec)  # type: ignore[arg-type]
        except CnnxError as exc:
            assert str(exc) and "\n" not in str(exc), repr(exc)  # one line, as the CLI prints it
            return
    assert px.dtype == np.uint8 and px.shape == spec.input_shape, (px.dtype, px.shape)


def _seed_files() -> list[bytes]:
    """Small valid files of every kind the fuzzer mutates: a digit-like blob in several formats and modes."""
    yy, xx = np.mgrid[0:24, 0:20]
    grey = (255 - 200 * (np.hypot(yy - 12, xx - 10) < 6)).astype(np.uint8)  # a dark ring on white
    base = Image.fromarray(grey)
    out = []
    for im, fmt, options in [
        (base, "PNG", {}),
        (base.convert("RGBA"), "PNG", {}),
        (base.convert("P"), "PNG", {"transparency": 0}),
        (Image.fromarray(grey.astype(np.uint16) * 257), "PNG", {}),
        (base.convert("RGB"), "JPEG", {"quality": 80}),
        (base.convert("CMYK"), "JPEG", {}),
        (base, "GIF", {}),
        (base, "BMP", {}),
        (base, "TIFF", {}),
        (base.convert("RGB"), "JPEG", {"progressive": True}),
    ]:
        buf = io.BytesIO()
        im.save(buf, format=fmt, **options)
        out.append(buf.getvalue())
    frames = [base, base.transpose(Image.Transpose.ROTATE_90)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    return out + [buf.getvalue()]


SEEDS = _seed_files()


@st.composite
def mutated(draw: Callable) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "cut", "repeat"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[at] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif kind == "cut":
            del data[at:]
        elif kind == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 64))]
    return bytes(data)


def _shapes() -> st.SearchStrategy:
    side = st.integers(1, 48)
    return st.one_of(st.tuples(side, side), st.tuples(side, side, st.sampled_from([1, 3, 4])))


ARRAYS = st.one_of(
    hnp.arrays(st.sampled_from([np.uint8, np.uint16, np.int32, np.bool_]), _shapes()),
    hnp.arrays(np.float32, _shapes(), elements=st.floats(-2, 300, width=32)),
    hnp.arrays(np.float64, _shapes(), elements=st.floats(allow_nan=True, allow_infinity=True)),
)


@st.composite
def pillow_images(draw: Callable) -> Image.Image:
    """A Pillow image of any mode, made from a random array; palette images sometimes transparent."""
    a = draw(hnp.arrays(np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 40))))
    mode = draw(st.sampled_from(MODES))
    im = Image.fromarray(a)
    for step in {"RGBa": ("RGBA", "RGBa"), "La": ("LA", "La")}.get(mode, (mode,)):  # no direct way from L
        im = im.convert(step)
    if im.mode == "P" and draw(st.booleans()):
        im.info["transparency"] = draw(st.integers(0, 255))
    return im


_FOLDER = Path(tempfile.mkdtemp(prefix="cnnx-fuzz-"))


def check_file(data: bytes, suffix: str, spec: ModelSpec) -> None:
    """``data`` written to a file (decoded by path, as `cnnx infer` does) and preprocessed."""
    path = _FOLDER / f"input{suffix}"
    path.write_bytes(data)
    check(str(path), spec)


def fuzz_settings(default: int) -> settings:
    return settings(
        max_examples=EXAMPLES or default,
        deadline=DEADLINE,
        database=None,
        derandomize=EXAMPLES is None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@fuzz_settings(100)
@given(data=st.binary(max_size=2048), suffix=st.sampled_from([".png", ".jpg", ".gif", ""]), spec=st.sampled_from(SPECS))
def test_random_bytes(data: bytes, suffix: str, spec: ModelSpec) -> None:
    check_file(data, suffix, spec)


@fuzz_settings(150)
@given(data=mutated(), spec=st.sampled_from(SPECS))
def test_mutated_image_files(data: bytes, spec: ModelSpec) -> None:
    check_file(data, ".png", spec)


@fuzz_settings(100)
@given(source=st.one_of(ARRAYS, pillow_images()), spec=st.sampled_from(SPECS))
def test_random_arrays_and_images_of_every_mode(source: object, spec: ModelSpec) -> None:
    check(source, spec)


@fuzz_settings(50)
@given(shape=st.tuples(st.integers(1, 40), st.integers(1, 40)), n=st.integers(2, 6), data=st.data())
def test_batches_of_one_shape_through_the_vectorised_digit_path(
    shape: tuple[int, int], n: int, data: st.DataObject
) -> None:
    images = [data.draw(hnp.arrays(np.uint8, shape)) for _ in range(n)]
    with guarded():
        results = preprocess_batch(images, DIGIT)
    for image, result in zip(images, results, strict=False):
        if isinstance(result, CnnxError):
            assert "no digit found" in str(result)
        else:
            assert result.shape == (1, 28, 28) and result.dtype == np.uint8
            assert np.array_equal(result, preprocess(image, DIGIT))  # batched = one at a time


def test_a_hang_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # the guard must turn a hang into a failure, or the properties above prove nothing about hangs
    monkeypatch.setattr(sys.modules[__name__], "HANG_SECONDS", 1)
    import time

    with pytest.raises(Hang), guarded():
        time.sleep(3)
