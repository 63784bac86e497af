"""Command-line image arguments -> image files: files, folders (recursive) and glob patterns."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path

from cnnx.runtime.image import IMAGE_SUFFIXES

_GLOB_CHARS = frozenset("*?[")


def image_files(folder: str | Path) -> list[str]:
    """Image files under ``folder``, recursively, by suffix, sorted by path; hidden entries skipped.

    Plain strings and os.path: for a folder of 10,000 digits, pathlib objects cost
    more than decoding the listing.
    """
    found: list[str] = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(os.path.join(root, f) for f in files
                     if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_SUFFIXES)
    found.sort(key=lambda p: p.split(os.sep))  # component by component, as pathlib sorts
    return found


def images_in(folder: Path) -> list[Path]:
    """``image_files`` as Path objects."""
    return [Path(p) for p in image_files(folder)]


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
