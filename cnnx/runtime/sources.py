"""Command-line image arguments -> image files: files, folders (recursive) and glob patterns."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path

from cnnx.core.contract import IMAGE_SUFFIXES, image_files

_GLOB_CHARS = frozenset("*?[")


def expand(arguments: Sequence[str]) -> tuple[list[str], list[str]]:
    """(image paths in order, problems): each argument is a file, a folder or a glob.

    A file named explicitly is kept even when it does not exist or is not an image,
    so that decoding reports it by name; a folder with no images or a pattern that
    matches nothing is a problem of its own. Each file is listed once.
    """
    paths: list[str] = []
    problems: list[str] = []
    seen: set[str] = set()

    def add(p: str) -> None:
        key = os.path.abspath(p)  # abspath normalises too
        if key not in seen:
            seen.add(key)
            paths.append(p)

    for arg in arguments:
        p = Path(arg)
        if p.is_dir():
            found = image_files(arg)
            if not found:
                problems.append(f"{arg}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES)[:6])}, ...)")
            for f in found:
                add(f)
        elif not p.exists() and _GLOB_CHARS & set(arg):
            matches = sorted(glob.glob(arg, recursive=True))
            if not matches:
                problems.append(f"{arg}: no file matches this pattern")
            for m in matches:
                if os.path.isdir(m):
                    for f in image_files(m):
                        add(f)
                else:
                    add(m)
        else:
            add(arg)
    return paths, problems
