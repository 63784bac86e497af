"""Decoding and preprocessing in worker processes, for large folders.

Pillow's per-file work (parsing, decoding, converting) is mostly Python that holds
the GIL, so threads do not overlap it; forked processes do. Forking is only worth
it for many files: a fork costs milliseconds, a 28x28 PNG about 150 us. Workers
are forked (Linux) before the first model call, while onnxruntime's threads are
idle, and inherit the imported modules, so they start at once. Elsewhere (no
``fork``) decoding stays in-process.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import cast

import numpy as np

from cnnx.core.errors import ImageError
from cnnx.core.spec import ModelSpec
from cnnx.runtime.image import ImageSource, preprocess_batch

PARALLEL_FROM = 2048  # files: below this, forking the workers costs more than it saves

Chunk = tuple[int, list[ImageSource]]  # (position of the first image, the images)
Decoded = list["np.ndarray | ImageError"]  # per image: uint8 (C, H, W), or why it failed

_spec: ModelSpec | None = None  # set in each worker by _init
_recipe: str | None = None


def auto_workers(images: Iterable[ImageSource], cores: int) -> int:
    """Worker processes to use by default: the cores, for a long list of file paths on Linux; else 0."""
    if sys.platform != "linux" or cores < 2 or not isinstance(images, Sequence) or len(images) < PARALLEL_FROM:
        return 0
    return cores if all(isinstance(s, (str, Path)) for s in images) else 0


def _init(spec: ModelSpec, recipe: str | None) -> None:
    global _spec, _recipe
    _spec, _recipe = spec, recipe


def _work(chunk: list[ImageSource]) -> tuple[np.ndarray | None, list[int], dict[int, str]]:
    """In a worker: (the good images stacked (n, C, H, W) uint8, their positions, {position: error})."""
    assert _spec is not None
    results = preprocess_batch(chunk, _spec, _recipe)
    good = [i for i, r in enumerate(results) if not isinstance(r, ImageError)]
    errors = {i: str(r) for i, r in enumerate(results) if isinstance(r, ImageError)}
    stacked = np.stack([cast(np.ndarray, results[i]) for i in good]) if good else None
    return stacked, good, errors  # one array pickles fast


def decode(
    chunks: Iterable[Chunk], spec: ModelSpec, recipe: str | None, workers: int
) -> Iterator[tuple[int, list[ImageSource], Decoded]]:
    """(position, images, decoded) per chunk, in order; ``workers`` > 1 decodes in that many processes."""
    if workers < 2:
        for position, chunk in chunks:
            yield position, chunk, preprocess_batch(chunk, spec, recipe)
        return
    import multiprocessing

    chunks = list(chunks)
    with multiprocessing.get_context("fork").Pool(workers, _init, (spec, recipe)) as pool:
        for (position, chunk), (stacked, good, errors) in zip(
            chunks, pool.imap(_work, [c for _, c in chunks]), strict=False
        ):
            decoded: list[np.ndarray | ImageError | None] = [
                ImageError(errors[i]) if i in errors else None for i in range(len(chunk))
            ]
            for row, i in enumerate(good):
                decoded[i] = cast(np.ndarray, stacked)[row]  # stacked holds every good image
            yield position, chunk, cast(Decoded, decoded)  # every position filled
