"""What every dataset loader returns, where data lives, and the locate-download-locate step they share.

A per-sample PIL ``DataLoader`` spends most of an MNIST epoch decoding and
converting; one (N, C, H, W) uint8 tensor per split, normalised a batch at a
time on the training device, is many times faster and fits easily (MNIST: 47 MB).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import torch

import cnnx
from cnnx.core.contract import first_line
from cnnx.core.errors import DataNotFoundError
from cnnx.core.spec import ModelSpec

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

    def model_spec(self, arch: str) -> ModelSpec:
        """The spec of an ``arch`` network trained on this data (its test accuracy is filled in per epoch)."""
        return ModelSpec(
            arch=arch,
            input_shape=self.input_shape,
            color=self.color,
            mean=self.mean,
            std=self.std,
            classes=self.classes,
            preprocess=self.preprocess,
            dataset=self.name,
            versions={"cnnx": cnnx.__version__, "torch": str(torch.__version__)},
        )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.train.x.shape[1:]
        return (int(c), int(h), int(w))


def locate_or_download(
    root: Path,
    locate: Callable[[Path], T | None],
    download: Callable[[Path], None] | None,
    missing: Callable[[Path, str], DataNotFoundError],
) -> T:
    """``locate(root)``; when it finds nothing and ``download`` is given, download into ``root`` and look again.

    ``missing(root, why)`` makes the error: "download disabled" or "download failed: REASON". A failed
    (or interrupted) download leaves nothing behind: the folders and files it made are removed.
    """
    found = locate(root)
    if found is None and download is not None:
        undo = _undoer(root)
        try:
            download(root)
        except BaseException as exc:
            undo()
            if not isinstance(exc, Exception):  # Ctrl-C: cleaned up, and still an interruption
                raise
            raise missing(root, f"download failed: {download_reason(exc)}") from None
        found = locate(root)
    if found is None:
        raise missing(root, "download disabled" if download is None else "the download left no files")
    return found


def _undoer(root: Path) -> Callable[[], None]:
    """A function that removes what was created under ``root`` from now on: the outermost of ``root``
    and its parents that does not exist yet, or else the entries the folder ``root`` does not hold yet."""
    if not root.exists():
        top = root
        while not top.parent.exists():
            top = top.parent
        return lambda: shutil.rmtree(top, ignore_errors=True)
    before = set(os.listdir(root)) if root.is_dir() else set()

    def undo() -> None:
        for name in set(os.listdir(root)) - before if root.is_dir() else ():
            path = root / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    return undo


def download_reason(exc: BaseException) -> str:
    """Why a torchvision download failed, on one line. Its MNIST report spans lines, one error per mirror:
    "Error downloading F:\nTried URL, got:\n<urlopen error [Errno 111] Connection refused>\n..." ->
    "F from URL: Connection refused"; an error of its own (CIFAR-10) is cut to its first line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    head = re.fullmatch(r"Error downloading (.+?):?", lines[0]) if lines else None
    tried = [
        f"from {m.group(1)}: {_plain(lines[i + 1])}"
        for i, line in enumerate(lines[:-1])
        if (m := re.fullmatch(r"Tried (\S+), got:", line))
    ]
    if head is None or not tried:
        return _plain(first_line(exc))
    return f"{head.group(1)} " + "; ".join(tried)


def _plain(error: str) -> str:
    """urllib's "<urlopen error [Errno -3] Temporary failure in name resolution>" as the words inside it."""
    error = re.sub(r"^<urlopen error (.*)>$", r"\1", error.strip())
    error = re.sub(r"^\[Errno -?\d+\] ", "", error)
    if "name resolution" in error or "Name or service not known" in error:
        error += " (no network, or no DNS)"
    return error
