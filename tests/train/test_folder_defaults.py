"""`cnnx train FOLDER` with no options: size, colour, network, batch and flips come from the folder's
images (bench/folder_defaults.py measured the choices)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from cnnx.core.idx import read_idx  # noqa: E402
from cnnx.train.config import MAX_SIZE, MIN_SIZE, folder_batch  # noqa: E402
from cnnx.train.data.folder import load_folder, survey  # noqa: E402
from tests.support import MINI_MNIST, run_cli  # noqa: E402
from tests.support.images import write_image_folder  # noqa: E402


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 1,500 digits of the shipped mini MNIST as grey 28x28 PNGs in class folders (my_digits/7/0042.png)."""
    root = tmp_path_factory.mktemp("digits") / "my_digits"
    x = np.concatenate([read_idx(MINI_MNIST / f"{s}-images-idx3-ubyte.gz") for s in ("train", "t10k")])
    y = np.concatenate([read_idx(MINI_MNIST / f"{s}-labels-idx1-ubyte.gz") for s in ("train", "t10k")])
    for i, (image, label) in enumerate(zip(x, y, strict=True)):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / str(label) / f"{i:04d}.png")
    return root


def test_a_digit_folder_trains_well_in_one_epoch_with_no_options(digits: Path, tmp_path: Path) -> None:
    """The defaults once were RGB, 32 pixels, flips, cifar-bn and 256 images a step: 10-20% after one epoch."""
    run = tmp_path / "run"
    summary = json.loads(run_cli("train", str(digits), "--epochs", "1", "--out", str(run), "--json", check=True).stdout)
    cfg = summary["config"]
    assert (cfg["grayscale"], cfg["image_size"], cfg["flip"]) == (True, 28, False)
    assert (cfg["batch_size"], cfg["lr"]) == (32, 0.02 * 32 / 256)  # 1,200 training digits: 38 steps an epoch
    assert summary["arch"] == "mnist-bn16" and summary["epoch_metrics"][0]["test_loss"] < 1.0
    assert summary["final_accuracy"] > 0.85  # 300 held-out digits; 94% when measured
    spec = torch.load(run / "last.pt", weights_only=True)["spec"]
    assert spec["input_shape"] == [1, 28, 28] and spec["color"] == "L"


def test_a_photo_folder_trains_in_colour_at_its_images_size(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "photos", ["a", "b"], per_class=6, size=(24, 30))  # colour classes
    data = load_folder(root, val_split=0.5)
    assert data.color == "RGB" and data.input_shape == (3, 24, 24) and not data.hflip
    assert load_folder(root, image_size=16, grayscale=True, val_split=0.5).input_shape == (1, 16, 16)


def test_survey_takes_the_median_shorter_side_within_bounds(tmp_path: Path) -> None:
    sizes = [(12, 90), (50, 20), (200, 24), (40, 40), (500, 500)]  # shorter sides 12, 20, 24, 40, 500
    paths = []
    for i, size in enumerate(sizes):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", size, (200, 30, 30)).save(paths[-1])
    assert survey(paths) == (24, False)
    assert survey(paths[:1]) == (12, False) and survey(paths[-1:]) == (MAX_SIZE, False)
    tiny = tmp_path / "tiny.png"
    Image.new("L", (5, 5)).save(tiny)
    assert survey([tiny]) == (MIN_SIZE, True)


def test_grey_images_saved_as_colour_files_count_as_grey(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (48, 48), dtype=np.uint8)
    Image.fromarray(np.stack([grey] * 3, axis=2)).save(tmp_path / "scan.jpg", quality=75)  # RGB JPEG of grey
    Image.fromarray(grey).convert("P").save(tmp_path / "palette.png")
    tinted = np.stack([grey, grey, np.clip(grey.astype(int) + 40, 0, 255).astype(np.uint8)], axis=2)
    Image.fromarray(tinted).save(tmp_path / "tinted.png")
    assert survey([tmp_path / "scan.jpg", tmp_path / "palette.png"])[1] is True
    assert survey([tmp_path / "scan.jpg", tmp_path / "tinted.png"])[1] is False  # one coloured image: colour
    assert survey([tmp_path / "missing.png"]) == (MAX_SIZE, False)  # nothing readable: decoding will say so


@pytest.mark.parametrize(
    ("images", "batch"), [(100_000, 256), (12_800, 256), (12_799, 128), (3_200, 64), (1_918, 32), (10, 32)]
)
def test_a_small_folder_takes_smaller_batches(images: int, batch: int) -> None:
    assert folder_batch(images) == batch


def test_a_run_saved_before_settled_configs_resumes_as_it_trained(tmp_path: Path) -> None:
    """Checkpoints of older versions left arch, image size and flips at None for a folder (then: cifar-bn,
    32 pixels, flips on); their spec says what the network was trained on, and that is what resumes."""
    root = write_image_folder(tmp_path / "photos", ["a", "b"], per_class=10, size=(20, 20))
    run = tmp_path / "run"
    args = ["--image-size", "16", "--batch-size", "8", "--no-plots", "--device", "cpu", "--out", str(run)]
    run_cli("train", str(root), "--epochs", "1", *args, check=True)
    state = torch.load(run / "last.pt", weights_only=True)
    state["config"].update(arch=None, image_size=None, grayscale=False, flip=None, epochs=2)  # as older cnnx saved
    torch.save(state, run / "last.pt")
    summary = json.loads(run_cli("train", "--resume", str(run), "--json", check=True).stdout)
    cfg = summary["config"]
    assert (summary["arch"], cfg["image_size"], cfg["grayscale"], cfg["flip"]) == ("cifar-bn", 16, False, True)
    assert torch.load(run / "last.pt", weights_only=True)["spec"]["input_shape"] == [3, 16, 16]
