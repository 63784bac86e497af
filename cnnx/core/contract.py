"""What every part of cnnx agrees on: tensor and file names, which images a folder holds,
how pixels become model input, which checkpoint a run folder means, how an error is shortened.

Stdlib and numpy only; each of these has exactly one definition, here.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

# The exported graph: float32 (batch, C, H, W) normalised in, (batch, num_classes) logits out.
INPUT_NAME, OUTPUT_NAME, BATCH_AXIS = "input", "logits", "batch"
# Where a TorchScript file carries the model spec (one of its extra files).
TORCHSCRIPT_SPEC_FILE = "cnnx_spec.json"
# What export writes beside the files it proved: every format's parity record.
PARITY_FILE = "parity.json"
# Files that hold PyTorch models (checkpoints, state_dicts, TorchScript), by suffix; torch.save and
# TorchScript also write zip archives whatever the name.
TORCH_SUFFIXES = frozenset({".pt", ".pth", ".ckpt", ".torchscript", ".ts", ".jit"})
# A run folder's checkpoints: the newest epoch (what --resume continues) and the best one.
LAST, BEST = "last.pt", "best.pt"
# What a run folder holds beside them: the run's summary, its pictures, its TensorBoard events.
METRICS, CURVES, CONFUSION, TENSORBOARD = "metrics.json", "curves.png", "confusion.png", "tensorboard"

# Image files a folder is searched for (lower-case suffixes), for training, eval and infer alike;
# a file named explicitly is always tried, whatever its name.
IMAGE_SUFFIXES = frozenset(
    [
        ".png",
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".bmp",
        ".dib",
        ".gif",
        ".tif",
        ".tiff",
        ".webp",
        ".pbm",
        ".pgm",
        ".ppm",
        ".pnm",
        ".tga",
        ".ico",
        ".jp2",
        ".j2k",
    ]
)


def image_files(folder: str | Path) -> list[str]:
    """Image files under ``folder``, recursively, by suffix, sorted by path; hidden entries skipped,
    symbolic links to folders not followed (a link loop cannot hang a listing).

    Plain strings and os.path: for a folder of 10,000 digits, pathlib objects cost
    more than decoding the listing.
    """
    found: list[str] = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(
            os.path.join(root, f)
            for f in files
            if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_SUFFIXES
        )
    found.sort(key=lambda p: p.split(os.sep))  # component by component, as pathlib sorts
    return found


# An image folder split by its owner: ROOT/train/CLASS/... beside ROOT/test/CLASS/... (or val/). Training
# takes the two splits as they are, and eval of ROOT reads the test one, as training's test accuracy did.
TRAIN_FOLDER, TEST_FOLDERS = "train", ("test", "val")


def split_folders(root: str | Path) -> tuple[Path, Path] | None:
    """(train folder, test folder) of ``root`` when it is laid out in those two splits, else None."""
    root = Path(root)
    test = next((root / n for n in TEST_FOLDERS if (root / n).is_dir()), None)
    return (root / TRAIN_FOLDER, test) if test is not None and (root / TRAIN_FOLDER).is_dir() else None


def images_in(folder: str | Path) -> list[Path]:
    """``image_files`` as Path objects."""
    return [Path(p) for p in image_files(folder)]


def normalise(batch: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """uint8 (N, C, H, W) -> float32 (N, C, H, W), (pixel / 255 - mean) / std per channel.

    One multiply-add with float32 constants: training's normaliser (cnnx.train.steps) computes the
    same expression on torch tensors, so the runtime and export feed the model the numbers it was
    trained and evaluated on, bit for bit.
    """
    scale, bias = normalise_constants(mean, std)
    out = batch.astype(np.float32)
    out *= scale  # in place: a batch of 256 digits took 0.50 ms with two temporaries, 0.06 ms without
    out += bias
    return out


def normalise_constants(mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(scale, bias), each float32 (1, C, 1, 1): input = pixel * scale + bias."""
    std_a = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    scale = (1.0 / (255.0 * std_a)).astype(np.float32)
    bias = (-np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1) / std_a).astype(np.float32)
    return scale, bias


def run_checkpoint(path: str | Path, resume: bool = False) -> Path:
    """The checkpoint a path means: a file is itself; a run folder is its ``best.pt`` when it has
    one (what export, eval, summary, inspect and bench use), else ``last.pt``; ``resume=True``
    always takes ``last.pt``, where the run stopped. The result may not exist: callers say so."""
    path = Path(path)
    if not path.is_dir():
        return path
    if not resume and (path / BEST).is_file():
        return path / BEST
    return path / LAST


def is_torch_file(path: Path) -> bool:
    """Does ``path`` look like a PyTorch file (by suffix, or a zip archive as torch.save writes)?
    An ONNX file is a protobuf, never a zip."""
    import zipfile

    return path.suffix.lower() in TORCH_SUFFIXES or zipfile.is_zipfile(path)


def is_torchscript(path: Path) -> bool:
    """Is ``path`` a zip archive of TorchScript (what ``torch.jit.save`` writes)? TorchScript archives
    hold compiled code (".../code/..." and constants.pkl); torch.save archives hold data only."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/" in n or n.endswith("/constants.pkl") for n in z.namelist())


def first_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message cut to its first line (third-party errors carry backtraces and advice)."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


def held_out_split(labels: list[int] | np.ndarray, val_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted indices (train, test) of an image folder without train/ and test/ sub-folders: ``val_split``
    of each class held out for the test split, chosen by a seeded shuffle. ``cnnx train FOLDER
    --val-split F --seed S`` splits so, and ``cnnx eval --val-split F --seed S`` scores the same share."""
    rng = np.random.default_rng(seed)
    y = np.asarray(labels)
    train, test = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = int(round(len(idx) * val_split))
        if val_split > 0 and len(idx) > 1:  # at least one image each side when the class has two
            k = min(max(k, 1), len(idx) - 1)
        test.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
