"""What an ExecuTorch program's (``.pte``) own header says of its size, read without ExecuTorch or torch.

A ``.pte`` is a flatbuffer (identifier ``ET12`` at byte 4) whose extended header (``eh00`` at byte 8,
little-endian) gives the program's size and, when the weights lie in segments after it, where the
segments begin and how many bytes they take. A file shorter than that was cut short (a copy that
stopped, a full disk): ``cnnx inspect`` would otherwise show its spec (kept in the ``.pte.json``
beside it) as if all were well, and ExecuTorch's loader says only "error: 0x23".
"""

from __future__ import annotations

from pathlib import Path

from cnnx.core.errors import ModelFileError

MAGIC = b"eh00"  # ExecuTorch's extended header (executorch/exir/_serialize/_program.py, _ExtendedHeader)
HEADER_AT = 8  # after the flatbuffer's root offset and its file identifier
MIN_LENGTH = 24  # magic, length, program size, segment base offset; +8 with the segment data size


def expected_size(head: bytes) -> int | None:
    """The bytes a program whose first 40 bytes are ``head`` must have, or None when it has no
    extended header (an old or foreign file: nothing to check)."""
    h = head[HEADER_AT : HEADER_AT + 32]
    if len(h) < MIN_LENGTH or h[:4] != MAGIC:
        return None
    length = int.from_bytes(h[4:8], "little")
    program = int.from_bytes(h[8:16], "little")
    segments_at = int.from_bytes(h[16:24], "little")
    segments = int.from_bytes(h[24:32], "little") if length > MIN_LENGTH and len(h) >= 32 else 0
    return segments_at + segments if segments_at and segments else program


def truncation(path: Path) -> str | None:
    """ "NAME is cut short: ..." when the file at ``path`` is shorter than its header says, else None."""
    with open(path, "rb") as f:
        head = f.read(HEADER_AT + 32)
    want, have = expected_size(head), path.stat().st_size
    if want is None or have >= want:
        return None
    return f"{path} is cut short: {have:,} bytes of the {want:,} its header gives"


def check_whole(path: Path) -> None:
    """Raise ModelFileError naming the way out when the program at ``path`` is cut short."""
    cut = truncation(path)
    if cut:
        raise ModelFileError(cut, "copy it again, or export it again with `cnnx export`")
