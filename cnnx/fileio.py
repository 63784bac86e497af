"""Atomic file writes, stdlib only: training, export and the edge runtime all write through here."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[Any], Any]) -> Path:
    """Call ``write(file_object)`` on a temp file beside ``path``, fsync, then rename over it.

    A crash at any point leaves either the old file or the new one, never half of one.
    The file gets the permissions of an ordinary new file (0666 less the umask), not the
    private 0600 that temp files are created with.
    """
    import tempfile  # here, not at the top: it costs the edge runtime's start-up ~5 ms for every image it never writes

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
