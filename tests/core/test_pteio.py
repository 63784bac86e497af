"""An ExecuTorch program's size, read from its own header without ExecuTorch: a file cut short is named."""

from __future__ import annotations

from pathlib import Path

from cnnx.core import pteio


def _program(program: int, segments_at: int, segments: int, length: int = 32) -> bytes:
    """The first 40 bytes of a .pte: root offset, "ET12", then the extended header (little-endian)."""
    header = pteio.MAGIC + length.to_bytes(4, "little") + program.to_bytes(8, "little")
    header += segments_at.to_bytes(8, "little") + segments.to_bytes(8, "little")
    return b"\x1c\x00\x00\x00ET12" + header


def test_the_size_is_the_segments_end_or_the_program_alone() -> None:
    assert pteio.expected_size(_program(2928, 2944, 301_864)) == 304_808  # weights in a segment after the program
    assert pteio.expected_size(_program(5000, 0, 0)) == 5000  # all in the flatbuffer
    assert pteio.expected_size(_program(2928, 2944, 99, length=24)) == 2928  # an older header: no segment size
    assert pteio.expected_size(b"\x1c\x00\x00\x00ET12" + b"\x00" * 32) is None  # no extended header
    assert pteio.expected_size(b"ET") is None


def test_a_program_shorter_than_its_header_says_is_named_cut_short(tmp_path: Path) -> None:
    whole = _program(2928, 2944, 1000)
    path = tmp_path / "model.pte"
    path.write_bytes(whole + b"\x00" * (3944 - len(whole)))
    assert pteio.truncation(path) is None
    path.write_bytes(whole + b"\x00" * 100)
    assert pteio.truncation(path) == f"{path} is cut short: 140 bytes of the 3,944 its header gives"
