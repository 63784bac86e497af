"""Image folders laid out as torchvision's ``ImageFolder`` (one sub-folder per class), decoded once.

    root/cat/001.jpg  root/dog/xyz.png ...                 -> split by --val-split, per class, seeded
    root/train/cat/...  root/test/cat/... (or val/)        -> those two splits as they are

Size and colour mode are the options', or else the images' own (``survey``: a
folder of grey 28x28 digits trains grey at 28 pixels). Every image is decoded,
converted and resized once, with the runtime's own
``resize`` recipe (``cnnx.runtime.image.preprocess``), into one uint8 tensor per
split, so the training loop is the same as for MNIST and CIFAR-10, and an image
given to ``cnnx infer`` later is prepared exactly as the training images were.
(The runtime is imported here on purpose: two copies of the recipe would drift.)
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cnnx.core.contract import IMAGE_SUFFIXES, held_out_split, images_in, split_folders
from cnnx.core.errors import ConfigError, DataNotFoundError
from cnnx.core.spec import ModelSpec
from cnnx.train.config import MAX_SIZE, MIN_SIZE
from cnnx.train.data.base import Dataset, Split

SURVEY = 256  # images looked at to settle size and colour; spread over the whole folder
GREY_SPREAD = 8  # an RGB image whose channels differ by at most this (of 255) everywhere is grey (JPEG noise)


def _class_dirs(root: Path) -> list[Path]:
    """Sub-folders in sorted order, as ImageFolder finds classes (hidden folders skipped)."""
    return sorted(
        (Path(e.path) for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")), key=lambda p: p.name
    )


def _scan(root: Path, classes: list[str] | None = None) -> tuple[list[str], list[Path], list[int]]:
    """(class names, image paths, class indices) of one ImageFolder tree."""
    dirs = _class_dirs(root)
    names = [d.name for d in dirs]
    if classes is not None:
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise DataNotFoundError(
                f"{root} has class folders the training split lacks: {', '.join(unknown)}",
                "give both splits the same class folders",
            )
    classes = classes if classes is not None else names
    paths, labels, empty = [], [], []
    for d in dirs:
        files = images_in(d)  # the files cnnx infer and eval see in it
        if not files:
            empty.append(d.name)
        paths += files
        labels += [classes.index(d.name)] * len(files)
    if not dirs:
        raise DataNotFoundError(
            f"{root} has no class sub-folders", "lay it out as ROOT/CLASS_NAME/IMAGE.jpg, one sub-folder per class"
        )
    if len(dirs) == 1 and classes is names:
        # one class would train to 100% and answer it for everything: most often an unpacked archive's
        # folder (flowers/flower_photos/daisy/...), whose classes are one level down
        inner = _class_dirs(dirs[0])
        raise DataNotFoundError(
            f"{root} has one class sub-folder, {dirs[0].name}: a classifier needs two classes or more",
            f"its classes look one level down: give {dirs[0]}"
            if len(inner) > 1
            else "add one sub-folder of images per class",
        )
    if empty and classes is names:
        raise DataNotFoundError(
            f"no images ({', '.join(sorted(IMAGE_SUFFIXES)[:6])}, ...) in class folder(s) of {root}: "
            f"{', '.join(empty)}",
            "add images or remove those folders",
        )
    return classes, paths, labels


def _decode(
    paths: list[Path], labels: list[int], shape: tuple[int, int, int], color: str, workers: int, skipped: list[str]
) -> tuple[np.ndarray, list[int]]:
    """(N, C, H, W) uint8 and their labels: each file through the runtime's ``resize`` recipe.

    A file that cannot be decoded is left out, and its one-line reason appended to ``skipped``:
    one bad download among thousands of photos should not stop a run, nor pass unnoticed.
    """
    from cnnx.core.errors import ImageError
    from cnnx.runtime.image import preprocess

    c = shape[0]
    spec = ModelSpec(arch="", input_shape=shape, color=color, mean=(0.0,) * c, std=(1.0,) * c, classes=[])
    out = np.empty((len(paths), *shape), np.uint8)
    ok = np.ones(len(paths), bool)

    def one(i: int) -> str | None:
        try:
            out[i] = preprocess(paths[i], spec, "resize")
        except ImageError as exc:  # names the file and the reason
            ok[i] = False
            return str(exc)
        return None

    # Pillow releases the GIL while decoding and resizing: threads scale on a multi-core machine
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        skipped += [why for why in pool.map(one, range(len(paths))) if why is not None]
    return out[ok], [label for label, good in zip(labels, ok, strict=False) if good]


def _mean_std(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 (N, C, H, W) pixels scaled to [0, 1], in float64 sums."""
    c = x.shape[1]
    flat = x.transpose(1, 0, 2, 3).reshape(c, -1)
    mean = flat.mean(axis=1, dtype=np.float64) / 255
    sq = np.einsum("ij,ij->i", flat.astype(np.float32), flat.astype(np.float32), dtype=np.float64)
    std = np.sqrt(np.maximum(sq / flat.shape[1] / 255**2 - mean**2, 0))
    return tuple(round(float(v), 4) for v in mean), tuple(round(max(float(v), 1e-3), 4) for v in std)


def survey(paths: list[Path]) -> tuple[int, bool]:
    """(side in pixels, grey?) the images at ``paths`` suggest, from up to SURVEY of them: the median of
    their shorter sides within [MIN_SIZE, MAX_SIZE], and grey when none of them holds colour.
    Unreadable files are passed over here; decoding names them."""
    sample = paths[:: max(1, len(paths) // SURVEY)][:SURVEY]
    sides, grey = [], True
    for path in sample:
        try:
            with Image.open(path) as im:  # the header: size and mode, no pixels yet
                sides.append(min(im.size))
                grey = grey and _is_grey(im)
        except Exception:  # noqa: BLE001 - any unreadable file: _decode reports it with its reason
            continue
    side = int(np.median(sides)) if sides else MAX_SIZE
    return min(max(side, MIN_SIZE), MAX_SIZE), grey and bool(sides)


def _is_grey(im: Image.Image) -> bool:
    """No colour: a grey mode, or colour channels that agree in a small copy (palette, RGB, CMYK ...)."""
    if set(im.getbands()) <= {"L", "1", "I", "F", "A"}:
        return True
    im.draft("RGB", (64, 64))  # JPEG: decode at a fraction of the size
    small = np.asarray(im.convert("RGB").resize((32, 32), Image.Resampling.BOX), dtype=np.int16)  # (32, 32, 3)
    return int((small.max(axis=2) - small.min(axis=2)).max()) <= GREY_SPREAD


def load_folder(
    path: Path,
    image_size: int | None = None,
    grayscale: bool | None = None,
    val_split: float = 0.2,
    seed: int = 0,
    workers: int = 0,
) -> Dataset:
    """The folder's images as a Dataset: ``image_size`` pixels square (None: the images' own size, see
    ``survey``), grey (L) or RGB as ``grayscale`` says (None: grey when the images hold no colour)."""
    root = Path(path)
    if not root.is_dir():
        raise DataNotFoundError(f"no folder {root}", "give a folder holding one sub-folder of images per class")
    splits = split_folders(root)
    if splits is not None:
        classes, train_paths, train_labels = _scan(splits[0])
        _, test_paths, test_labels = _scan(splits[1], classes)
    else:
        classes, paths, labels = _scan(root)
        tr, te = held_out_split(labels, val_split, seed)
        if len(te) == 0:
            raise ConfigError(
                f"{root}: --val-split {val_split} leaves no test images",
                "raise --val-split, add images, or give train/ and test/ sub-folders",
            )
        train_paths, train_labels = [paths[i] for i in tr], [labels[i] for i in tr]
        test_paths, test_labels = [paths[i] for i in te], [labels[i] for i in te]
    # what the options leave open, the images settle
    seen = survey(train_paths) if image_size is None or grayscale is None else (MAX_SIZE, False)
    size = seen[0] if image_size is None else image_size
    grey = seen[1] if grayscale is None else grayscale
    color = "L" if grey else "RGB"
    shape = (1 if grey else 3, size, size)
    skipped: list[str] = []
    train_x, train_labels = _decode(train_paths, train_labels, shape, color, workers, skipped)
    test_x, test_labels = _decode(test_paths, test_labels, shape, color, workers, skipped)
    for name, x in (("training", train_x), ("test", test_x)):
        if len(x) == 0:
            raise DataNotFoundError(
                f"{root}: none of the {name} images could be read ({skipped[0]})",
                "check the files, e.g. with cnnx infer on the folder",
            )
    mean, std = _mean_std(train_x)
    return Dataset(
        name=root.resolve().name,
        train=Split(torch.from_numpy(train_x), torch.tensor(train_labels, dtype=torch.int64)),
        test=Split(torch.from_numpy(test_x), torch.tensor(test_labels, dtype=torch.int64)),
        classes=classes,
        color=color,
        mean=mean,
        std=std,
        preprocess="resize",
        source=str(root.resolve()),
        hflip=False,  # whether a mirrored image keeps its class, the files cannot say: --flip says so
        skipped=skipped,
    )
