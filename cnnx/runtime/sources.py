"""Command-line image arguments -> image files: files, folders (recursive) and glob patterns."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path

from cnnx.runtime.image import IMAGE_SUFFIXES

_GLOB_CHARS = frozenset("*?[")


def images_in(folder: Path) -> list[Path]:
    """Image files under ``folder``, recursively, by suffix, in a stable (sorted) order; hidden entries skipped."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(root) / f for f in sorted(files)
                     if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES)
    return sorted(found)  # by path, folder by folder, as a listing reads


def expand(arguments: Sequence[str]) -> tuple[list[str], list[str]]:
    """(image paths in order, problems): each argument is a file, a folder or a glob.

    A file named explicitly is kept even when it does not exist or is not an image,
    so that decoding reports it by name; a folder with no images or a pattern that
    matches nothing is a problem of its own. Each file is listed once.
    """
    paths: list[str] = []
    problems: list[str] = []
    seen: set[str] = set()

    def add(p: Path | str) -> None:
        key = os.path.normpath(os.path.abspath(p))
        if key not in seen:
            seen.add(key)
            paths.append(str(p))

    for arg in arguments:
        p = Path(arg)
        if p.is_dir():
            found = images_in(p)
            if not found:
                problems.append(f"{arg}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES)[:6])}, ...)")
            for f in found:
                add(f)
        elif not p.exists() and _GLOB_CHARS & set(arg):
            matches = sorted(glob.glob(arg, recursive=True))
            if not matches:
                problems.append(f"{arg}: no file matches this pattern")
            for m in matches:
                if Path(m).is_dir():
                    for f in images_in(Path(m)):
                        add(f)
                else:
                    add(m)
        else:
            add(arg)
    return paths, problems
