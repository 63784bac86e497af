"""Command-line arguments -> files: images (files, folders searched recursively, glob patterns), and
the model file a training run folder given as ``--model`` means."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path

from cnnx.core.contract import IMAGE_SUFFIXES, image_files, run_checkpoint
from cnnx.core.errors import ModelFileError

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


def model_file(model: str | Path) -> Path:
    """The file ``model`` means to the edge runtime: a training run folder (best.pt or last.pt inside, as
    `cnnx train` writes it) means the ONNX file `cnnx export RUN` writes into it, named after the
    checkpoint a run folder means (RUN/best.onnx, RUN/last.onnx when it has no best.pt); any other path
    is itself. ModelFileError for a run folder not exported yet: the runtime never loads torch."""
    path, checkpoint = Path(model), run_checkpoint(model)
    if not (path.is_dir() and checkpoint.is_file()):  # a file, or a folder of model files
        return path
    onnx = checkpoint.with_suffix(".onnx")
    if not onnx.is_file():
        raise ModelFileError(
            f"{path} is a training run folder with no exported model in it (no {onnx.name})",
            f"export it first: cnnx export {path}, which writes {onnx}",
        )
    return onnx
