"""A model trained on an image folder with --grayscale, through `cnnx eval` and `cnnx export`, as a user runs them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.support import run_cli, torch_probs
from tests.support.images import write_image_folder

torch = pytest.importorskip("torch")

CLASSES = ["cat", "dog", "fox"]


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(run folder, image folder): one epoch of the default network on 16x16 grey images of three classes."""
    from cnnx.train.config import TrainConfig
    from cnnx.train.loop import train

    root = tmp_path_factory.mktemp("grey")
    data = write_image_folder(root / "pets", CLASSES, per_class=12)
    config = TrainConfig(
        dataset=str(data), image_size=16, grayscale=True, epochs=1, batch_size=8, out=str(root / "run"), plots=False
    )
    train(config)
    return root / "run", data


def test_eval_of_a_grayscale_folder_checkpoint_matches_the_torch_model(folder_run: tuple[Path, Path]) -> None:
    from cnnx.core.spec import ModelSpec
    from cnnx.runtime.image import preprocess

    run, data = folder_run
    proc = run_cli("eval", str(run / "best.pt"), "--data", str(data), "--json")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    result = json.loads(proc.stdout)
    # the same images through the runtime's recipe and the checkpoint's own torch model: (36, 1, 16, 16) uint8
    spec = ModelSpec.from_dict(torch.load(run / "best.pt", weights_only=True)["spec"])
    files = sorted(data.rglob("*.png"))
    pixels = torch.from_numpy(np.stack([preprocess(f, spec) for f in files]))
    predicted = torch_probs(run / "best.pt", pixels).argmax(1)
    truth = np.array([CLASSES.index(f.parent.name) for f in files])
    assert spec.input_shape == (1, 16, 16) and result["images"] == len(files) == 36
    assert result["correct"] == int((predicted == truth).sum())


def test_eval_scores_the_share_training_held_out_with_its_val_split_and_seed(folder_run: tuple[Path, Path]) -> None:
    from cnnx.core.spec import ModelSpec
    from cnnx.train.data.folder import load_folder

    run, data = folder_run
    whole = run_cli("eval", str(run / "best.pt"), "--data", str(data))
    assert whole.returncode == 0 and "give --val-split and --seed as at training" in whole.stderr, whole.stderr
    proc = run_cli("eval", str(run / "best.pt"), "--data", str(data), "--val-split", "0.2", "--seed", "0", "--json")
    assert proc.returncode == 0 and "note:" not in proc.stderr, proc.stderr
    result = json.loads(proc.stdout)
    spec = ModelSpec.from_dict(torch.load(run / "best.pt", weights_only=True)["spec"])
    held_out = load_folder(data, image_size=16, grayscale=True, val_split=0.2, seed=0).test
    # the same images as training's test split: the accuracy training recorded, to the image
    assert result["images"] == len(held_out) < 36 and (result["val_split"], result["seed"]) == (0.2, 0)
    assert result["correct"] == round(spec.test_accuracy * len(held_out))
    share = ("eval", str(run), "--data", str(data), "--val-split", "0.2")
    rest = json.loads(run_cli(*share, "--split", "train", "--json").stdout)
    assert rest["images"] == 36 - len(held_out)
    other = json.loads(run_cli(*share, "--seed", "5", "--json").stdout)
    assert other["images"] == len(held_out)  # as many, drawn otherwise
    text = run_cli(*share).stdout
    assert "(image folders, the test share of --val-split 0.2 --seed 0)" in text.splitlines()[0]


def test_export_takes_the_moved_image_folder_from_data_dir(folder_run: tuple[Path, Path], tmp_path: Path) -> None:
    from cnnx.train.data.folder import load_folder

    run, data = folder_run
    moved = tmp_path / "moved"
    shutil.move(data, moved)
    try:
        gone = run_cli("export", str(run), "--exporter", "legacy", "--out", str(tmp_path / "a"))
        assert gone.returncode == 2 and gone.stderr.strip().splitlines()[-1] == (
            f"error: the image folder the model was trained on, {data}, is not there "
            "(give the folder's new place with --data-dir)"
        )
        args = ("--exporter", "legacy", "--out", str(tmp_path / "b"), "--data-dir", str(moved), "--json")
        report = json.loads(run_cli("export", str(run), *args, check=True).stdout)
    finally:
        shutil.move(moved, data)
    # the test split training held out (its val_split and seed, from the checkpoint), read from the new place
    held_out = load_folder(data, image_size=16, grayscale=True).test
    assert report["images"]["folder"] == str(moved.resolve()) and report["images"]["images"] == len(held_out) > 0
    assert report["formats"]["onnx"]["passed"] and not report["images"]["sample"]
