"""Every bad input cnnx is hardened against, what `cnnx infer` must do with it, and how to run one.

One list serves both tests/runtime/test_hardening.py (which asserts each case) and
bench/bad_inputs.py (which writes the table in docs/bad-inputs.md from the same runs).

Each case writes its input into a folder and is run through the real `cnnx infer` in a
subprocess started in that folder. An image case sits between good digit files in the same
call (``good.png BAD reference.png``): a bad image must give one line ``error: NAME: reason``
and exit code 1 while both good files are still classified; a hard case that should work
must get the label of ``reference.png``, the same digit saved plainly. A model case runs
the reference digit through a hostile model file: one line naming the model, exit code 2.
"""

from __future__ import annotations

import ctypes
import io
import json
import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cnnx.core.idx import read_idx

ROOT = Path(__file__).resolve().parents[2]  # the folder holding the cnnx package: subprocesses run this copy
DIGITS = Path(__file__).resolve().parent.parent / "samples" / "mnist" / "t10k-images-idx3-ubyte.gz"
GOOD, REFERENCE = "good.png", "reference.png"  # the real digits in every image call: test digits 1 and 0


def digit(i: int) -> np.ndarray:
    """Test digit ``i`` of the mini MNIST, (28, 28) uint8, white on black (0 is a 7, 1 a 2)."""
    return read_idx(DIGITS)[i]


def paper(i: int = 0, scale: int = 4) -> Image.Image:
    """The digit as dark ink on white paper, ``scale`` times larger: what a scan looks like."""
    return Image.fromarray(255 - digit(i)).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC)


def _encoded(im: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **options)
    return buf.getvalue()


def _png_of_zeros(path: Path, width: int, height: int, bits: int) -> None:
    """A greyscale PNG of ``width`` x ``height`` black pixels, streamed row by row: a file of a
    few hundred KB that would take gigabytes to decode, written without holding it in memory."""
    row = b"\0" * (1 + (width * bits + 7) // 8)  # filter byte + packed pixels
    z, chunks = zlib.compressobj(9), []
    for _ in range(height):
        chunks.append(z.compress(row))
    chunks.append(z.flush())

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bits, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(chunks)) + chunk(b"IEND", b"")
    )


def _write(name: str, data: bytes | Callable[[Path], object]) -> Callable[[Path], str]:
    def make(folder: Path) -> str:
        path = folder / os.fsdecode(name)
        data(path) if callable(data) else path.write_bytes(data)
        return os.fsdecode(name)

    return make


def _animated(path: Path) -> None:
    frames = [paper(i).convert("L") for i in (0, 1, 2)]  # a 7, then a 2 and a 1
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)


def _folder(path: Path) -> None:
    path.mkdir()
    (path / "notes.txt").write_text("not an image\n")


def _unreadable(path: Path) -> None:
    paper().save(path)
    path.chmod(0)


@dataclass(frozen=True)
class Case:
    """One bad input: how to make it and what cnnx must do with it."""

    name: str  # a row of docs/bad-inputs.md
    make: Callable[[Path], str] | None = None  # writes the bad image into the folder; returns its argument
    reason: str = ""  # for a refused input: what its one-line message must say; "" = must be classified
    model: Callable[[Path, Path], list[str]] | None = None  # (folder, good model) -> model options; None = good
    unreadable: bool = False  # needs a process that cannot read files whatever their mode (root cannot)

    @property
    def exit_code(self) -> int:
        return 0 if not self.reason else (2 if self.model else 1)


IMAGE_CASES = [
    Case("empty file (`empty.png`, 0 bytes)", _write("empty.png", b""), "empty file"),
    Case(
        "truncated PNG (first half of a digit scan)",
        _write("truncated.png", _encoded(paper(), "PNG")[:400]),
        "corrupt or truncated image",
    ),
    Case(
        "truncated JPEG (first half of a digit scan)",
        _write("truncated.jpg", _encoded(paper().convert("RGB"), "JPEG")[:800]),
        "corrupt or truncated image",
    ),
    Case(
        "text file named `.png`",
        _write("notes.png", b"a shopping list, not a picture\n"),
        "not an image Pillow can read",
    ),
    Case("file that does not exist", lambda folder: "missing.png", "no such file"),
    Case("JPEG named `.png`", _write("photo.png", _encoded(paper().convert("RGB"), "JPEG", quality=90))),
    Case("1x1 pixel image", _write("dot.png", _encoded(Image.new("L", (1, 1), 0), "PNG")), "no digit found"),
    Case(
        "20,000x20,000 PNG (400 Mpx, 390 KB file)",
        _write("huge.png", lambda p: _png_of_zeros(p, 20000, 20000, 8)),
        "too large to decode safely",
    ),
    Case(
        "decompression bomb: 1-bit PNG of 50,000x50,000 (2.5 Gpx) in 300 KB",
        _write("bomb.png", lambda p: _png_of_zeros(p, 50000, 50000, 1)),
        "too large to decode safely",
    ),
    Case(
        "bomb inside Pillow's warn-only band: 10,000x10,000 (100 Mpx, Pillow would only warn)",
        _write("bomb-100mp.png", lambda p: _png_of_zeros(p, 10000, 10000, 1)),
        "too large to decode safely",
    ),
    Case(
        "16-bit greyscale PNG of a digit",
        _write("digit-16bit.png", _encoded(Image.fromarray((255 - digit(0)).astype(np.uint16) * 257), "PNG")),
    ),
    Case("CMYK JPEG of a digit", _write("digit-cmyk.jpg", _encoded(paper().convert("CMYK"), "JPEG", quality=92))),
    Case("animated GIF (frames 7, 2, 1): the first frame counts", _write("animated.gif", _animated)),
    Case("all-white image", _write("white.png", _encoded(Image.new("L", (64, 48), 255), "PNG")), "no digit found"),
    Case("all-black image", _write("black.png", _encoded(Image.new("L", (64, 48), 0), "PNG")), "no digit found"),
    Case("a path that is a folder holding no images", _write("scans.png", _folder), "folder holds no images"),
    Case(
        "a file without read permission (mode 000)",
        _write("locked.png", _unreadable),
        "permission denied",
        unreadable=True,
    ),
    Case(
        "non-UTF-8 file name (bytes `ziffer-\\xff.png`), a good digit",
        _write(os.fsdecode(b"ziffer-\xff.png"), _encoded(paper(), "PNG")),
    ),
    Case(
        "non-UTF-8 file name (bytes `kaputt-\\xff.png`), an empty file",
        _write(os.fsdecode(b"kaputt-\xff.png"), b""),
        "empty file",
    ),
]


@dataclass
class Outcome:
    """What one `cnnx infer` run did."""

    code: int  # exit code
    rows: dict[str, dict] = field(default_factory=dict)  # --json records by path
    errors: list[str] = field(default_factory=list)  # stderr lines
    stderr: str = ""


def shown(name: str) -> str:
    """A file name as cnnx prints it on stderr: undecodable bytes as backslash escapes."""
    return name.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")


def _no_read_override() -> None:
    # root reads files whatever their mode; without CAP_DAC_OVERRIDE (1) and CAP_DAC_READ_SEARCH (2)
    # in the bounding set, the exec'd process cannot, so mode 000 means what it says
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP


def can_drop_read_override(folder: Path) -> bool:
    """Whether a process started with ``unreadable`` cannot read a mode-000 file here."""
    probe = folder / ".probe"
    probe.write_bytes(b"x")
    probe.chmod(0)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", f"open({str(probe)!r}).read()"],
            capture_output=True,
            preexec_fn=_no_read_override if os.geteuid() == 0 else None,
            timeout=60,
        )
        return proc.returncode != 0
    finally:
        probe.unlink()


def run_infer(args: list[str], folder: Path, unreadable: bool = False, timeout: float = 300) -> Outcome:
    """`cnnx infer ARGS --json` in a subprocess started in ``folder``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "cnnx", "infer", *args, "--json"],
        capture_output=True,
        cwd=folder,
        env=env,
        timeout=timeout,
        preexec_fn=_no_read_override if unreadable and os.geteuid() == 0 else None,
    )
    out, err = proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
    rows = {r["path"]: r for r in map(json.loads, filter(str.strip, out.splitlines()))}
    return Outcome(proc.returncode, rows, err.splitlines(), err)


def prepare(folder: Path) -> None:
    """The good files every image call carries."""
    Image.fromarray(digit(1)).save(folder / GOOD)  # a 2
    Image.fromarray(digit(0)).save(folder / REFERENCE)  # a 7, the same digit the hard cases show


def run_case(case: Case, folder: Path, model: Path) -> tuple[Outcome, str]:
    """Make ``case`` in ``folder`` (created, with the good files) and run it; (outcome, the bad argument)."""
    folder.mkdir(parents=True, exist_ok=True)
    prepare(folder)
    if case.model is None:
        assert case.make is not None
        bad = case.make(folder)
        return run_infer([GOOD, bad, REFERENCE, "--model", str(model)], folder, case.unreadable), bad
    options = case.model(folder, model)
    return run_infer([REFERENCE, *options], folder), options[1]


def problems(case: Case, outcome: Outcome, bad: str) -> list[str]:
    """What is wrong with ``outcome`` for ``case``; empty when cnnx did what it must."""
    found = []
    if outcome.code != case.exit_code:
        found.append(f"exit code {outcome.code}, expected {case.exit_code}")
    if "Traceback" in outcome.stderr:
        found.append("a traceback on stderr")
    errors = [line for line in outcome.errors if line.strip()]
    if case.model is not None:
        if case.reason and (
            len(errors) != 1
            or not errors[0].startswith("error: ")
            or shown(bad) not in errors[0]
            or case.reason not in errors[0]
        ):
            found.append(f"expected one line naming {bad} and saying {case.reason!r}, got {errors}")
        label = outcome.rows.get(REFERENCE, {}).get("label")
        if not case.reason and (errors or label != TRUE_LABEL):
            found.append(f"expected {REFERENCE} classified as {TRUE_LABEL}, got {label}; stderr {errors}")
        return found
    if case.model is None:
        for good in (GOOD, REFERENCE):
            if not outcome.rows.get(good, {}).get("label"):
                found.append(f"{good} was not classified")
    if case.reason:
        mine = [line for line in errors if line.startswith(f"error: {shown(bad)}: ")]
        if len(mine) != 1 or case.reason not in mine[0]:
            found.append(f"expected one line 'error: {shown(bad)}: ...{case.reason}...', got {errors}")
        if len(errors) != 2 or "1 of 3 inputs could not be classified" not in errors[-1]:
            found.append(f"expected the error and a count on stderr, got {errors}")
    else:
        label = outcome.rows.get(bad, {}).get("label")
        want = outcome.rows.get(REFERENCE, {}).get("label")
        if errors or label is None or label != want:
            found.append(f"expected {bad} classified as {REFERENCE} ({want}), got {label}; stderr {errors}")
    return found


# ---------------------------------------------------------------- hostile model files (built with the onnx package)

TRUE_LABEL = "7"  # of the reference digit: what a usable model file must answer


def _bytes_of(name: str, cut: Callable[[bytes], bytes]) -> Callable[[Path, Path], list[str]]:
    def make(folder: Path, model: Path) -> list[str]:
        (folder / name).write_bytes(cut(model.read_bytes()))
        return ["--model", name]

    return make


def _edited(name: str, edit: Callable[..., object], *options: str) -> Callable[[Path, Path], list[str]]:
    """The good model loaded with onnx, changed by ``edit(proto, folder)``, saved as ``name``."""

    def make(folder: Path, model: Path) -> list[str]:
        import onnx

        proto = onnx.load(str(model))
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        saved = edit(proto, folder)
        if saved is None:
            onnx.save(proto, str(folder / name))
        return ["--model", name, *options]

    return make


def _strip_spec(proto: object, folder: Path) -> None:
    del proto.metadata_props[:]  # type: ignore[attr-defined]


def _set_meta(key: str, value: str) -> Callable[[object, Path], None]:
    def edit(proto: object, folder: Path) -> None:
        for p in proto.metadata_props:  # type: ignore[attr-defined]
            if p.key == key:
                p.value = value

    return edit


def external(proto: Any, folder: Path, location: str, data_file: Path, model_file: Path) -> bool:
    """Save ``proto`` as ``model_file`` with every weight in ``data_file``, referred to as ``location``."""
    import onnx
    from onnx.external_data_helper import convert_model_to_external_data

    # the weights only: small constants (shapes) stay inline, where shape inference needs them
    convert_model_to_external_data(proto, all_tensors_to_one_file=True, location="weights.bin", size_threshold=1024)
    model_file.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(model_file))  # writes model_file.parent/weights.bin
    data_file.parent.mkdir(parents=True, exist_ok=True)
    if data_file != model_file.parent / "weights.bin":
        os.replace(model_file.parent / "weights.bin", data_file)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    model_file.write_bytes(proto.SerializeToString())
    return True


def _outside(how: str) -> Callable[[object, Path], bool]:
    def edit(proto: object, folder: Path) -> bool:
        secret, model_file = folder / "secret" / "weights.bin", folder / "model" / "model.onnx"
        if how == "symlink":
            external(proto, folder, "weights.bin", secret, model_file)
            os.symlink(secret, folder / "model" / "weights.bin")
            return True
        location = {"relative": "../secret/weights.bin", "absolute": "/etc/passwd"}[how]
        return external(proto, folder, location, secret, model_file)

    return edit


def _inside(proto: object, folder: Path) -> bool:
    return external(proto, folder, "weights.bin", folder / "model" / "weights.bin", folder / "model" / "model.onnx")


def _rank_2(proto: object, folder: Path) -> None:
    # a flat 784 -> 10 model that claims the spec of a 1x28x28 one
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [784, 10], np.zeros(7840, np.float32))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w"], ["logits"])],
        "flat",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 784])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [w],
    )
    proto.graph.CopyFrom(graph)  # type: ignore[attr-defined]
    del proto.opset_import[:]  # type: ignore[attr-defined]
    proto.opset_import.append(helper.make_opsetid("", 17))  # type: ignore[attr-defined]


_NO_SPEC = _edited("plain.onnx", _strip_spec)
_RANDOM = bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8))
MODEL_CASES = [
    Case(
        "corrupt ONNX file (4 KB of random bytes)",
        model=_bytes_of("corrupt.onnx", lambda b: _RANDOM),
        reason="not a usable ONNX model",
    ),
    Case(
        "truncated ONNX file (first half)",
        model=_bytes_of("truncated.onnx", lambda b: b[: len(b) // 2]),
        reason="not a usable ONNX model",
    ),
    Case("empty `.onnx` file", model=_bytes_of("empty.onnx", lambda b: b""), reason="not a usable ONNX model"),
    Case("ONNX without cnnx metadata, no options", model=_NO_SPEC, reason="give --mean, --std and --size"),
    Case(
        "ONNX without cnnx metadata, `--mean` only",
        model=_edited("plain.onnx", _strip_spec, "--mean", "0.1307"),
        reason="needs --std (",  # --size: the graph takes 28x28 only
    ),
    Case(
        "ONNX without cnnx metadata, `--mean 0.1307 --std 0.3081 --size 28`",
        model=_edited("plain.onnx", _strip_spec, "--mean", "0.1307", "--std", "0.3081", "--size", "28"),
    ),
    Case(
        "cnnx ONNX given `--mean` as well (the spec is the single source)",
        model=_edited("cnnx.onnx", lambda p, f: None, "--mean", "0.5"),
        reason="carries its own cnnx spec",
    ),
    Case(
        "external data `../secret/weights.bin` (outside the model's folder)",
        model=_edited("model/model.onnx", _outside("relative")),
        reason="outside its folder",
    ),
    Case(
        "external data at an absolute path (`/etc/passwd`)",
        model=_edited("model/model.onnx", _outside("absolute")),
        reason="outside its folder",
    ),
    Case(
        "external data through a symbolic link in the model's folder pointing out",
        model=_edited("model/model.onnx", _outside("symlink")),
        reason="outside its folder",
    ),
    Case("external data beside the model (allowed)", model=_edited("model/model.onnx", _inside)),
    Case(
        "wrong input rank (rank 2, 784 values, with a 1x28x28 spec)",
        model=_edited("flat.onnx", _rank_2),
        reason="rank 2",
    ),
    Case(
        'cnnx metadata with a malformed value (`input_shape` = "abc")',
        model=_edited("odd.onnx", _set_meta("cnnx.input_shape", '"abc"')),
        reason="malformed",
    ),
    Case(
        "cnnx metadata asking for 100,000x100,000 inputs",
        model=_edited("vast.onnx", _set_meta("cnnx.input_shape", "[1, 100000, 100000]")),
        reason="each side must be 1 to 4096",
    ),
]
CASES = IMAGE_CASES + MODEL_CASES
