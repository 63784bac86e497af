"""`cnnx train path/to/folder`: ImageFolder trees generated in tmp_path, splits, spec, errors, samples."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")

from cnnx.cli import main  # noqa: E402
from cnnx.core.errors import CnnxError, ConfigError, DataNotFoundError  # noqa: E402
from cnnx.core.plots import grid_layout, png_size  # noqa: E402
from cnnx.train.data import load_dataset  # noqa: E402
from cnnx.train.data.folder import load_folder  # noqa: E402
from tests.support import (  # noqa: E402
    infer_json,
    run_cli,  # noqa: E402
    torch_probs,
)
from tests.support.images import write_image_folder  # noqa: E402

CLASSES = ["cat", "dog", "fox"]


@pytest.fixture(scope="module")
def flat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """root/CLASS/*.png, 30 per class, 40x48 pixels: split by --val-split."""
    return write_image_folder(tmp_path_factory.mktemp("flat") / "pets", CLASSES, per_class=30)


def test_val_split_is_per_class_seeded_and_keeps_every_image(flat: Path) -> None:
    data = load_folder(flat, image_size=16, val_split=0.2, seed=0)
    assert data.classes == CLASSES and data.name == "pets" and data.preprocess == "resize"
    assert data.train.x.shape == (72, 3, 16, 16) and data.test.x.shape == (18, 3, 16, 16)
    assert np.bincount(data.test.y.numpy()).tolist() == [6, 6, 6]  # 20% of each class
    again = load_folder(flat, image_size=16, val_split=0.2, seed=0)
    assert torch.equal(again.test.x, data.test.x)
    other = load_folder(flat, image_size=16, val_split=0.2, seed=1)
    assert not torch.equal(other.test.x, data.test.x)
    # mean/std measured on the training images, per channel
    x = data.train.x.float() / 255
    assert np.allclose(data.mean, x.mean(dim=(0, 2, 3)).numpy(), atol=1e-3)
    assert np.allclose(data.std, x.std(dim=(0, 2, 3)).numpy(), atol=2e-3)


def test_train_and_test_subfolders_are_used_as_they_are(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "train", CLASSES, per_class=4)
    write_image_folder(tmp_path / "val", CLASSES[:2], per_class=2, fmt="JPEG", seed=5)
    data = load_dataset(str(tmp_path), image_size=20, grayscale=True)
    assert data.classes == CLASSES and data.color == "L"
    assert data.train.x.shape == (12, 1, 20, 20) and data.test.x.shape == (4, 1, 20, 20)
    assert data.test.y.tolist() == [0, 0, 1, 1]


def test_training_pixels_are_what_the_runtime_makes_from_the_spec(tmp_path: Path) -> None:
    """The spec training writes reproduces the training pixels through cnnx.runtime (train/serve parity)."""
    from PIL import Image

    from cnnx.core.spec import ModelSpec
    from cnnx.runtime.image import preprocess

    root = write_image_folder(tmp_path / "imgs", ["a", "b"], per_class=3, size=(90, 70), fmt="JPEG")
    rgba = Image.new("RGBA", (50, 50), (200, 10, 10, 0))
    rgba.paste((10, 200, 10, 255), (10, 10, 40, 40))
    rgba.save(root / "a" / "zz_alpha.png")
    data = load_folder(root, image_size=24, val_split=0.0001 + 1 / 3, seed=0)
    spec = ModelSpec.from_dict(data.model_spec("cifar-bn").to_dict())
    files = sorted((root / "a").iterdir()) + sorted((root / "b").iterdir())
    pixels = {bytes(preprocess(f, spec)): f.name for f in files}
    for split in (data.train, data.test):
        for img in split.x:
            assert bytes(img.numpy()) in pixels


def test_folder_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="unknown dataset 'nope'"):
        load_dataset("nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match="no class sub-folders"):
        load_folder(tmp_path / "empty")
    root = write_image_folder(tmp_path / "r", ["a", "b"], per_class=3)
    (root / "c").mkdir()
    with pytest.raises(DataNotFoundError, match="class folder.*: c"):
        load_folder(root)
    shutil.rmtree(root / "c")
    with pytest.raises(ConfigError, match="leaves no test images"):
        load_folder(root, val_split=0.0)
    (root / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    data = load_folder(root)  # a bad file is left out and named, the rest is used
    assert len(data.train) + len(data.test) == 6 and len(data.skipped) == 1 and "broken.png" in data.skipped[0]
    for name in ("a", "b"):  # nothing readable at all: an error, not an empty dataset
        for f in (root / name).iterdir():
            f.write_bytes(b"")
    with pytest.raises(CnnxError, match="none of the training images could be read"):
        load_folder(root)
    with pytest.raises(ConfigError, match="apply to image folders"):
        load_dataset("mnist", image_size=32)


def test_a_folder_of_one_class_is_refused_and_an_archive_folder_named(flat: Path, tmp_path: Path) -> None:
    # an unpacked archive: the classes sit one level down, and one class would train to 100% on nothing
    (tmp_path / "download").mkdir()
    (tmp_path / "download" / "pets").symlink_to(flat)
    proc = run_cli("train", str(tmp_path / "download"), "--epochs", "1", "--out", str(tmp_path / "run"))
    assert proc.returncode == 2 and not (tmp_path / "run").exists()
    assert proc.stderr.splitlines()[-1] == (
        f"error: {tmp_path / 'download'} has one class sub-folder, pets: a classifier needs two classes or more "
        f"(its classes look one level down: give {tmp_path / 'download' / 'pets'})"
    )
    shutil.copytree(flat / "cat", tmp_path / "one" / "cat")
    with pytest.raises(DataNotFoundError, match="one class sub-folder, cat: .*add one sub-folder of images per class"):
        load_folder(tmp_path / "one")


def test_cli_trains_on_without_unreadable_images_and_names_them(flat: Path, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    shutil.copytree(flat, root)
    bad = {"empty.png": b"", "notes.png": b"shopping list", "cut.png": (next(root.rglob("*.png")).read_bytes()[:40])}
    first_class = sorted(p for p in root.iterdir() if p.is_dir())[0]
    for name, data in bad.items():
        (first_class / name).write_bytes(data)
    proc = run_cli(
        "train",
        str(root),
        "--image-size",
        "16",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--no-plots",
        "--out",
        str(tmp_path / "run"),
        "--device",
        "cpu",
        "--json",
        check=True,
    )
    summary = json.loads(proc.stdout)
    assert sorted(Path(line.split(":")[0]).name for line in summary["skipped_images"]) == sorted(bad)
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert warnings[0] == "warning: 3 unreadable image(s) left out of the dataset:"
    assert all(any(name in w for w in warnings[1:]) for name in bad) and "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def folder_run(flat: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """`cnnx train FOLDER` through the CLI with the default network, grey 16x16 images, flipped."""
    out = tmp_path_factory.mktemp("folder-run") / "run"
    proc = run_cli(
        "train",
        str(flat),
        "--image-size",
        "16",
        "--grayscale",
        "--flip",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--out",
        str(out),
        "--device",
        "cpu",
        "--json",
        check=True,
    )
    return out, json.loads(proc.stdout)


def test_cli_trains_a_folder_with_the_default_network(flat: Path, folder_run: tuple[Path, dict]) -> None:
    out, result = folder_run
    assert result["arch"] == "cifar-bn" and result["dataset"] == "pets"
    assert result["config"]["dataset"] == str(flat.resolve())  # absolute: --resume works from anywhere
    assert result["epoch_metrics"][-1]["train_accuracy"] > 0.5  # chance is 1/3
    spec = torch.load(out / "last.pt", weights_only=True)["spec"]
    assert spec["classes"] == CLASSES and spec["input_shape"] == [1, 16, 16] and spec["color"] == "L"
    assert spec["preprocess"] == "resize" and len(spec["mean"]) == 1 and 0 < spec["std"][0] < 1


def test_export_then_infer_prepares_new_images_as_training_did(folder_run: tuple[Path, dict], tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    run, _ = folder_run
    run_cli("export", str(run), "--format", "onnx", "--out", str(tmp_path / "exp"), check=True)
    # new JPEGs of another size: the runtime must resize and grey them from the spec, as training did
    new = tmp_path / "new"
    write_image_folder(new / "train", CLASSES, per_class=1, size=(64, 50), fmt="JPEG", seed=7)
    shutil.copytree(new / "train", new / "test")
    files = sorted((new / "train").rglob("*.jpg"))
    results = infer_json(tmp_path / "exp" / "best.onnx", *files)  # a run folder exports its best.pt
    x = load_folder(new, image_size=16, grayscale=True).train.x  # the training pipeline, same order
    probs = torch_probs(run / "best.pt", x)
    for r, p in zip(results, probs, strict=False):
        assert r["label"] == CLASSES[int(p.argmax())]
        assert r["probability"] == pytest.approx(float(p.max()), abs=1e-4)


def _invoke(*args: str) -> tuple[int, str, str]:
    """In-process CLI (no interpreter start-up): exit code, stdout, stdout and stderr together."""
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.output


def test_fixed_size_seed_network_on_other_sizes_fails_before_training(flat: Path, tmp_path: Path) -> None:
    code, _, out = _invoke(
        "train", str(flat), "--arch", "seed003-net", "--image-size", "16", "--out", str(tmp_path / "r")
    )
    assert code == 2 and "Traceback" not in out
    assert "seed003-net cannot take 3x16x16 images" in out and "--image-size" in out
    assert not (tmp_path / "r" / "last.pt").exists()


def test_samples_grid_of_a_folder(flat: Path, tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    code, text, both = _invoke(
        "samples", str(flat), "--count", "12", "--columns", "6", "--image-size", "24", "--out", str(out), "--json"
    )
    assert code == 0, both
    result = json.loads(text)
    assert len(result["labels"]) == 12 and set(result["labels"]) <= set(CLASSES)
    rows, cols, up = grid_layout(12, 24, 24, 6)
    assert (rows, cols) == (2, 6)
    # 2-pixel (scaled) padding, a 16-pixel caption strip per row and a 24-pixel title strip
    assert png_size(out) == (cols * (24 * up + 2 * up) + 2 * up, 24 + rows * (24 * up + 2 * up + 16) + 2 * up)


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("--image-size", "4", "--image-size must be at least 8 pixels, got 4"),
        ("--val-split", "1.5", "--val-split must be in [0, 1), got 1.5"),
    ],
)
def test_samples_checks_folder_options_as_train_does(
    flat: Path, tmp_path: Path, option: str, value: str, words: str
) -> None:
    code, _, both = _invoke("samples", str(flat), option, value, "--out", str(tmp_path / "grid.png"))
    assert code == 2 and both.strip().splitlines() == [f"error: {words}"]
    assert not (tmp_path / "grid.png").exists()
