"""Accuracy and confusion matrix of a model on labelled data: MNIST IDX files or one folder per class.

IDX images are already what the model was trained on (28x28, centred, white on
black), so they go to the model as they are, normalised exactly as in training:
the figure matches training's test accuracy and the export parity report. Image
folders go through the spec's preprocessing recipe, as ``cnnx infer`` does.

The model is anything with ``spec`` and ``run(float32 (N, C, H, W)) -> (N, K)
logits``: an ONNX session here, or a torch model wrapped by ``cnnx.tools.modelfile``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cnnx.core import calibration as cal
from cnnx.core.contract import held_out_split, images_in, normalise, split_folders
from cnnx.core.errors import ConfigError, DataNotFoundError, ImageError
from cnnx.core.idx import MNIST_FILES, locate_mnist, read_idx
from cnnx.core.plots import confusion_matrix
from cnnx.core.spec import ModelSpec
from cnnx.runtime.image import preprocess_batch


class Model(Protocol):
    spec: ModelSpec

    def run(self, x: np.ndarray) -> np.ndarray: ...


@dataclass
class LabelledData:
    source: str  # the folder, as given
    kind: str  # "mnist-idx" or "image-folder"
    labels: np.ndarray  # (N,) int64 class indices
    pixels: np.ndarray | None = None  # (N, C, H, W) uint8, IDX only
    paths: list[Path] = field(default_factory=list)  # image files, image folders only
    idx_file: str = ""  # the IDX images file, to name an image by its index in it

    def name(self, i: int) -> str:
        """How a user finds image ``i`` again: its path, or ``t10k-images-idx3-ubyte.gz[i]``."""
        return str(self.paths[i]) if self.paths else f"{self.idx_file}[{i}]"

    def __len__(self) -> int:
        return len(self.labels)


def load_labelled(
    folder: str | Path, spec: ModelSpec, split: str = "test", val_split: float | None = None, seed: int = 0
) -> LabelledData:
    """MNIST IDX files of ``split`` in ``folder``, else a tree with one sub-folder per class name: the
    ``split`` one of its train/ and test/ (or val/) sub-folders when it has them; else, with
    ``val_split``, the ``split`` share of it that ``cnnx train --val-split V --seed S`` draws
    (``held_out_split``), else the whole tree."""
    root = Path(folder)
    if not root.is_dir():
        raise DataNotFoundError(
            f"no folder at {root}", "give --data a folder of MNIST IDX files or of class sub-folders"
        )
    files = locate_mnist(root, (split,))
    splits = split_folders(root)
    if splits is not None and {p.name for p in splits} & set(spec.classes):
        splits = None  # classes named train and test: a tree of classes, not two splits
    if val_split is not None and (files is not None or splits is not None):
        held = "MNIST IDX files" if files is not None else "train/ and test/ sub-folders"
        raise ConfigError(f"{root} holds {held}: it has its own test split, and --val-split draws none")
    if files is not None:
        pair = files[f"{split}-images"], files[f"{split}-labels"]
        images, labels = read_idx(pair[0]), read_idx(pair[1]).astype(np.int64)  # (N, H, W) uint8, (N,)
        channels, h, w = spec.input_shape
        if images.ndim != 3 or images.shape[1:] != (h, w) or channels != 1 or len(images) != len(labels):
            raise DataNotFoundError(
                f"{pair[0]} holds {images.shape} images and {labels.shape} labels; the model takes "
                f"{spec.input_shape} images",
                "evaluate it on data of its own kind",
            )
        if len(labels) and (labels.min() < 0 or labels.max() >= spec.num_classes):
            raise DataNotFoundError(f"{pair[1]} has labels outside 0..{spec.num_classes - 1}")
        return LabelledData(str(root), "mnist-idx", labels, pixels=images[:, None], idx_file=pair[0].name)
    if splits is not None:  # laid out as cnnx train takes it
        return _image_folder(splits[0] if split == "train" else splits[1], spec)
    data = _image_folder(root, spec)
    if val_split is None:
        return data
    train, test = held_out_split(data.labels, val_split, seed)
    pick = train if split == "train" else test
    if not len(pick):
        raise ConfigError(f"{root}: --val-split {val_split} leaves no {split} images")
    return LabelledData(data.source, data.kind, data.labels[pick], paths=[data.paths[i] for i in pick])


def _image_folder(root: Path, spec: ModelSpec) -> LabelledData:
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    index = {name: i for i, name in enumerate(spec.classes)}
    unknown = [d.name for d in subdirs if d.name not in index and images_in(d)]
    if unknown:
        raise DataNotFoundError(
            f"{root}: sub-folder(s) {', '.join(unknown[:5])} are not classes of this model",
            f"name them after the model's classes: {', '.join(spec.classes[:20])}",
        )
    paths, labels = [], []
    for d in subdirs:
        if d.name in index:
            found = images_in(d)
            paths.extend(found)
            labels.extend([index[d.name]] * len(found))
    if not paths:
        names = ", ".join(s + "[.gz]" for s in MNIST_FILES["test"])
        raise DataNotFoundError(
            f"{root} holds neither MNIST IDX files nor images in class sub-folders",
            f"put {names} there, or one sub-folder of images per class ({', '.join(spec.classes[:3])}, ...)",
        )
    return LabelledData(str(root), "image-folder", np.asarray(labels, dtype=np.int64), paths=paths)


@dataclass
class Mistake:
    """One misclassified image, with what the model saw."""

    source: str  # path, or IDX file[index]
    true: str  # class names
    predicted: str
    probability: float  # calibrated probability of the (wrong) predicted class
    pixels: np.ndarray  # (C, H, W) uint8: the model's input before normalisation

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "true": self.true,
            "predicted": self.predicted,
            "probability": round(self.probability, 6),
        }


@dataclass
class EvalResult:
    model: str
    data: str
    kind: str  # "mnist-idx" or "image-folder"
    classes: list[str]
    confusion: np.ndarray  # (K, K) int64, rows = true class, columns = predicted
    failed: list[str]  # one line per image that could not be read
    seconds: float  # wall time of decoding + model
    mistakes: list[Mistake] = field(default_factory=list)  # in data order
    honesty: dict[str, Any] = field(default_factory=dict)  # cnnx.core.calibration.summary of the images read

    def worst(self, n: int) -> list[Mistake]:
        """The ``n`` most confident mistakes: the ones worth looking at first."""
        return sorted(self.mistakes, key=lambda m: -m.probability)[:n]

    @property
    def total(self) -> int:
        return int(self.confusion.sum())

    @property
    def correct(self) -> int:
        return int(np.trace(self.confusion))

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    def per_class(self) -> list[float | None]:
        rows = self.confusion.sum(axis=1)
        return [float(self.confusion[i, i] / r) if r else None for i, r in enumerate(rows)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "data": self.data,
            "kind": self.kind,
            "images": self.total,
            "correct": self.correct,
            "accuracy": self.accuracy,
            "classes": self.classes,
            "per_class_accuracy": dict(zip(self.classes, self.per_class(), strict=False)),
            "confusion": self.confusion.tolist(),
            "failed": self.failed,
            "misclassified": [m.to_dict() for m in self.mistakes],
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.total / self.seconds, 1) if self.seconds > 0 else None,
            **{k: v for k, v in self.honesty.items() if k != "reliability"},
        }


def evaluate(
    model: Model,
    data: LabelledData,
    batch_size: int = 1000,
    recipe: str | None = None,
    progress: Callable[[int], None] | None = None,
    model_name: str = "",
) -> EvalResult:
    """Run ``model`` over ``data``; ``progress(n)`` is called after each batch of n images."""
    spec = model.spec
    k = spec.num_classes
    confusion = np.zeros((k, k), dtype=np.int64)
    failed: list[str] = []
    mistakes: list[Mistake] = []
    seen: list[tuple[np.ndarray, np.ndarray]] = []  # (logits, labels) of every batch, for calibration
    temperature = cal.temperature_of(spec.calibration)
    start = time.perf_counter()
    for lo in range(0, len(data), batch_size):
        hi = min(lo + batch_size, len(data))
        labels = data.labels[lo:hi]
        index = np.arange(lo, hi)  # positions in data, for naming mistakes
        if data.pixels is not None:
            px = data.pixels[lo:hi]
        else:
            keep, rows = [], []
            for i, result in enumerate(preprocess_batch(data.paths[lo:hi], spec, recipe)):
                if isinstance(result, ImageError):
                    failed.append(str(result))
                else:
                    rows.append(result)
                    keep.append(i)
            labels, index = labels[keep], index[keep]
            px = np.stack(rows) if rows else np.zeros((0, *spec.input_shape), np.uint8)
        if len(px):
            logits = model.run(normalise(px, spec.mean, spec.std))  # (n, K)
            pred = logits.argmax(axis=1)
            confusion += confusion_matrix(labels, pred, k)
            seen.append((logits, labels))
            top = cal.softmax(logits, temperature).max(axis=1)  # calibrated probability of the predicted class
            for j in np.flatnonzero(pred != labels):
                mistakes.append(
                    Mistake(
                        data.name(int(index[j])),
                        spec.classes[labels[j]],
                        spec.classes[pred[j]],
                        float(top[j]),
                        np.array(px[j]),
                    )
                )
        if progress is not None:
            progress(hi - lo)
    seconds = time.perf_counter() - start
    honesty = {}
    if seen:
        logits_all, labels_all = (np.concatenate(parts) for parts in zip(*seen, strict=True))
        honesty = cal.summary(logits_all, labels_all, spec)
    return EvalResult(
        model_name, data.source, data.kind, list(spec.classes), confusion, failed, seconds, mistakes, honesty
    )


COLUMN_NAME = 8  # the longest class name confusion_table puts above a column


def confusion_table(result: EvalResult) -> str:
    """The confusion matrix as aligned text, rows = true class, columns = predicted.

    Class names up to COLUMN_NAME characters head the columns; with a longer one the columns are
    numbered and each row names its number and class in full (names are never cut: two classes
    that begin alike would look the same)."""
    names = result.classes
    counts = len(str(int(result.confusion.max(initial=0))))
    if max(map(len, names)) <= COLUMN_NAME:
        width = max(max(len(n) for n in names), counts, 3)
        heads, rows = [n.rjust(width) for n in names], [n.rjust(width) for n in names]
        title = "confusion matrix (rows: true class, columns: predicted)"
    else:
        width = max(len(str(len(names) - 1)), counts, 3)
        heads = [str(i).rjust(width) for i in range(len(names))]
        label = max(len(f"{i} {n}") for i, n in enumerate(names))
        rows = [f"{i} {n}".ljust(label) for i, n in enumerate(names)]
        title = "confusion matrix (rows: true class, columns: predicted, numbered as the rows)"
    lines = [title, " " * (len(rows[0]) + 2) + " ".join(heads)]
    for name, row in zip(rows, result.confusion, strict=False):
        lines.append(name + "  " + " ".join(str(int(v)).rjust(width) for v in row))
    return "\n".join(lines)
