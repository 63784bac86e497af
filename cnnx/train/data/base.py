"""What every dataset loader returns, where data lives, and the locate-download-locate step they share.

A per-sample PIL ``DataLoader`` spends most of an MNIST epoch decoding and
converting; one (N, C, H, W) uint8 tensor per split, normalised a batch at a
time on the training device, is many times faster and fits easily (MNIST: 47 MB).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import torch

from cnnx.core.contract import first_line
from cnnx.core.errors import DataNotFoundError

ENV_DATA_DIR = "CNNX_DATA_DIR"
T = TypeVar("T")


@dataclass(frozen=True)
class DatasetFacts:
    """What a model trained on a named dataset expects: the one place these values are written."""

    name: str  # registry key, e.g. "mnist"
    classes: tuple[str, ...]  # class names, index = label
    color: str  # Pillow mode: "L" or "RGB"
    mean: tuple[float, ...]  # per channel, of pixels in [0, 1], measured on the train split
    std: tuple[float, ...]
    preprocess: str  # runtime recipe name (cnnx.core.spec.RECIPES)
    hflip: bool  # a mirrored image keeps its label (photos: yes; digits: no)
    default_arch: str  # what `cnnx train NAME` trains without --arch

    def spec_fields(self) -> dict[str, object]:
        """The model spec's fields these facts fill in."""
        return {
            "color": self.color,
            "mean": self.mean,
            "std": self.std,
            "classes": list(self.classes),
            "preprocess": self.preprocess,
            "dataset": self.name,
        }


@dataclass
class Split:
    x: torch.Tensor  # (N, C, H, W) uint8
    y: torch.Tensor  # (N,) int64 class indices

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Dataset:
    name: str
    train: Split
    test: Split
    classes: list[str]
    color: str  # Pillow mode: "L" or "RGB"
    mean: tuple[float, ...]  # per channel, of pixels in [0, 1], measured on the train split
    std: tuple[float, ...]
    preprocess: str  # runtime recipe name (cnnx.core.spec.RECIPES)
    source: str  # folder the files were read from
    hflip: bool = False  # a mirrored image keeps its label (photos: yes; digits: no)
    skipped: list[str] = field(default_factory=list)  # images left out, each "FILE: why" on one line

    @classmethod
    def of(
        cls, facts: DatasetFacts, train: Split, test: Split, source: str, classes: list[str] | None = None
    ) -> Dataset:
        """A named dataset: its facts, its two splits, the folder they came from.

        ``classes``: the class names as the files name them, where they say."""
        return cls(
            name=facts.name,
            train=train,
            test=test,
            classes=classes or list(facts.classes),
            color=facts.color,
            mean=facts.mean,
            std=facts.std,
            preprocess=facts.preprocess,
            source=source,
            hflip=facts.hflip,
        )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.train.x.shape[1:]
        return (int(c), int(h), int(w))


def default_data_dir() -> Path:
    env = os.environ.get(ENV_DATA_DIR)
    return Path(env) if env else Path.home() / ".cache" / "cnnx" / "data"


def locate_or_download(
    root: Path,
    locate: Callable[[Path], T | None],
    download: Callable[[Path], None] | None,
    missing: Callable[[Path, str], DataNotFoundError],
) -> T:
    """``locate(root)``; when it finds nothing and ``download`` is given, download into ``root`` and look again.

    ``missing(root, why)`` makes the error: "download disabled" or "download failed: REASON".
    """
    found = locate(root)
    if found is None and download is not None:
        try:
            download(root)
        except Exception as exc:  # URLError, RuntimeError from md5 checks, OSError, tarfile errors ...
            raise missing(root, f"download failed: {first_line(exc)}") from None
        found = locate(root)
    if found is None:
        raise missing(root, "download disabled" if download is None else "the download left no files")
    return found
