"""Run pictures (curves.png, confusion.png), --tensorboard, and the seeds' checkpoint habits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from click.testing import CliRunner  # noqa: E402

from cnnx.cli import main  # noqa: E402
from cnnx.core import plots  # noqa: E402
from cnnx.core.errors import ConfigError  # noqa: E402
from cnnx.train.checkpoint import keep_files  # noqa: E402
from cnnx.train.config import TrainConfig  # noqa: E402
from tests.support import MINI_MNIST, REPO, run_cli  # noqa: E402


def _metrics(n: int) -> list[dict]:
    return [
        {
            "epoch": e,
            "train_loss": 1 / e,
            "test_loss": 1.1 / e,
            "train_accuracy": 1 - 0.3 / e,
            "test_accuracy": 1 - 0.35 / e,
        }
        for e in range(1, n + 1)
    ]


def _colour_pixels(path: Path, rgb: tuple[int, int, int]) -> int:
    """How many pixels of the PNG are within a small distance of ``rgb``."""
    from PIL import Image

    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.int64)
    return int((np.abs(pixels - np.array(rgb)).sum(axis=2) < 40).sum())


def test_curves_png_is_real_and_of_the_documented_size(tmp_path: Path) -> None:
    for n in (1, 12):  # a single epoch still draws
        path = plots.save_curves(_metrics(n), tmp_path / f"c{n}.png", "title")
        assert plots.png_size(path) == (1000, 400)
    diverged = [{**m, "train_loss": float("nan"), "test_loss": float("inf")} for m in _metrics(3)]
    assert plots.png_size(plots.save_curves(diverged, tmp_path / "nan.png")) == (1000, 400)
    with pytest.raises(ConfigError):
        plots.save_curves([], tmp_path / "none.png")


def test_curves_draw_each_series_in_its_colour(tmp_path: Path) -> None:
    train, held, test = (colour for *_, colour in plots.SERIES)
    plain = plots.save_curves(_metrics(5), tmp_path / "plain.png")
    assert _colour_pixels(plain, train) > 300 and _colour_pixels(plain, test) > 300
    assert _colour_pixels(plain, held) == 0  # nothing held out: no held-out line, nor its legend entry
    with_held = [
        {**m, "holdout_loss": 2 * m["test_loss"], "holdout_accuracy": m["test_accuracy"] - 0.1} for m in _metrics(5)
    ]
    both = plots.save_curves(with_held, tmp_path / "held.png")
    assert _colour_pixels(both, held) > 300


def test_curves_need_no_matplotlib(tmp_path: Path) -> None:
    """A run draws its curves with Pillow alone: here matplotlib cannot be imported at all."""
    code = (
        "import sys\nsys.modules['matplotlib'] = None\nfrom pathlib import Path\nfrom cnnx.core import plots\n"
        f"m = [{{'epoch': e, 'train_loss': 1 / e, 'test_loss': 1 / e, 'train_accuracy': 0.9, 'test_accuracy': 0.9}} "
        f"for e in (1, 2, 3)]\nprint(plots.png_size(plots.save_curves(m, Path({str(tmp_path / 'c.png')!r}))))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(1000, 400)"


def test_text_beyond_ascii_is_drawn_letter_for_letter() -> None:
    """Pillow's default font has glyphs for ASCII only: "é" of a class name ("étoile") came out as the
    same box as a character no font here has. Text beyond ASCII is drawn in DejaVu Sans where it is
    found (the system's fonts, or matplotlib's copy, which this environment has)."""
    from PIL import Image, ImageDraw, ImageFont

    def drawn(text: str, font: object) -> bytes:
        im = Image.new("L", (40, 30), 0)
        ImageDraw.Draw(im).text((4, 2), text, font=font, fill=255)
        return im.tobytes()

    missing = "\ue000"  # a private-use code point: no font draws it as a letter
    default, wide = ImageFont.load_default(size=20), plots.text_font(20, "étoile")
    assert drawn("é", default) == drawn(missing, default)  # why: the default font's box
    assert Path(wide.path).name == "DejaVuSans.ttf"
    assert drawn("é", wide) != drawn(missing, wide) and drawn("é", wide) != drawn("e", wide)
    assert plots.text_font(20, "star") is plots.text_font(20, "circle")  # ASCII keeps the default, loaded once


def test_axis_ticks_are_round_numbers() -> None:
    assert plots.nice_ticks(0.0, 1.0) == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert plots.nice_ticks(94.6, 99.8) == pytest.approx([95, 96, 97, 98, 99])
    assert plots.nice_ticks(0.55, 12.45, most=10, integer=True) == [2, 4, 6, 8, 10, 12]
    assert plots.nice_ticks(0.5, 1.5, most=10, integer=True) == [1]  # one epoch: one tick, a whole number
    assert plots.nice_ticks(3.0, 3.0) == pytest.approx([3.0])
    assert plots.log_ticks(0.004, 3.0) == pytest.approx([0.01, 0.1, 1])
    assert plots.log_ticks(0.04, 2.1) == pytest.approx([0.05, 0.1, 0.2, 0.5, 1, 2])  # under three decades


def test_confusion_counts_and_png(tmp_path: Path) -> None:
    y_true = np.array([0, 0, 1, 1, 1, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 2])
    cm = plots.confusion_matrix(y_true, y_pred, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 1], [0, 0, 1]]
    path = plots.draw_confusion(cm, ["a", "b", "c"], tmp_path / "cm.png")
    assert plots.png_size(path) == (222, 246)  # one 44-pixel cell per class, margins for the names
    many = [f"class {i}" for i in range(100)]
    big = plots.confusion_matrix(np.arange(100), np.arange(100), 100)
    assert np.array_equal(big, np.eye(100, dtype=np.int64))
    path = plots.draw_confusion(big, many, tmp_path / "big.png")
    assert plots.png_size(path) == (4490, 4514)


def test_grid_rejects_what_is_not_uint8_images(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="uint8"):
        plots.save_grid(np.zeros((2, 3, 8, 8), np.float32), ["a", "b"], tmp_path / "g.png")
    path = plots.save_grid(np.zeros((3, 1, 8, 8), np.uint8), ["a", "b", "c"], tmp_path / "g.png", ncols=2)
    rows, cols, up = plots.grid_layout(3, 8, 8, 2)
    assert plots.png_size(path) == (cols * 10 * up + 2 * up, rows * (10 * up + 16) + 2 * up)
    with pytest.raises(ConfigError, match="not a PNG"):
        plots.png_size(Path(__file__))


def test_every_run_saves_curves_and_confusion(trained_run: Path) -> None:
    assert plots.png_size(trained_run / "curves.png") == (1000, 400)
    assert plots.png_size(trained_run / "confusion.png") == (530, 554)
    summary = json.loads((trained_run / "metrics.json").read_text())
    assert summary["plots"] == {
        "curves": str(trained_run / "curves.png"),
        "confusion": str(trained_run / "confusion.png"),
    }
    assert all(0 <= m["train_accuracy"] <= 1 for m in summary["epoch_metrics"])


def test_keep_files_follows_save_every_and_save_min_acc() -> None:
    cfg = TrainConfig(save_every=2, save_min_acc=0.9)
    assert keep_files(cfg, 1, 0.95, is_best=True) == ["best.pt"]
    assert keep_files(cfg, 2, 0.95, is_best=False) == ["epoch-002.pt"]
    assert keep_files(cfg, 4, 0.95, is_best=True) == ["best.pt", "epoch-004.pt"]
    assert keep_files(cfg, 4, 0.85, is_best=True) == []  # below the threshold: only last.pt
    assert keep_files(TrainConfig(), 3, 0.1, is_best=True) == ["best.pt"]


def test_tensorboard_and_save_every_through_the_cli(tmp_path: Path) -> None:
    from cnnx.train.tblog import read_scalars

    out = tmp_path / "run"
    proc = run_cli(
        "train",
        "mnist",
        "--data-dir",
        str(MINI_MNIST),
        "--no-download",
        "--epochs",
        "2",
        "--batch-size",
        "64",
        "--save-every",
        "1",
        "--tensorboard",
        "--out",
        str(out),
        "--json",
        check=True,
    )
    result = json.loads(proc.stdout)
    names = {p.name for p in out.iterdir()}
    assert {"last.pt", "best.pt", "epoch-001.pt", "epoch-002.pt", "curves.png", "confusion.png"} <= names
    assert torch.load(out / "epoch-001.pt", weights_only=True)["epoch"] == 1
    scalars = read_scalars(out / "tensorboard")
    held = {"loss/held_out", "accuracy/held_out"}  # the 8% of the training split held out of training
    assert set(scalars) == {"loss/train", "loss/test", "accuracy/train", "accuracy/test", "lr", *held}
    assert [step for step, _ in scalars["accuracy/test"]] == [1, 2]
    held_out = [e["holdout_accuracy"] for e in result["epoch_metrics"]]
    assert [v for _, v in scalars["accuracy/held_out"]] == pytest.approx(held_out)
    assert scalars["accuracy/test"][-1][1] == pytest.approx(result["final_accuracy"])
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    assert acc.Tags()["images"] == ["train images"]


def test_save_min_acc_keeps_only_last_below_the_threshold(tmp_path: Path) -> None:
    out = tmp_path / "run"
    ok = CliRunner().invoke(
        main,
        [
            "train",
            "mnist",
            "--data-dir",
            str(MINI_MNIST),
            "--no-download",
            "--epochs",
            "1",
            "--batch-size",
            "64",
            "--save-every",
            "1",
            "--save-min-acc",
            "1.0",
            "--no-plots",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["plots"] == {}
    assert {p.name for p in out.iterdir()} == {"last.pt", "metrics.json"}
    bad = CliRunner().invoke(
        main, ["train", "mnist", "--data-dir", str(MINI_MNIST), "--save-min-acc", "97", "--out", str(tmp_path / "b")]
    )
    assert bad.exit_code == 2 and "--save-min-acc is a fraction" in bad.output and "0.97" in bad.output


def test_tensorboard_continues_cleanly_after_a_resume(tmp_path: Path) -> None:
    from cnnx.train.loop import Reporter, train
    from cnnx.train.tblog import read_scalars

    class StopBeforeEpoch2(Reporter):
        def epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
            if epoch == 2:
                raise KeyboardInterrupt

    cfg = TrainConfig(
        epochs=2,
        batch_size=128,
        data_dir=str(MINI_MNIST),
        download=False,
        out=str(tmp_path / "r"),
        device="cpu",
        tensorboard=True,
        plots=False,
    )
    with pytest.raises(KeyboardInterrupt):
        train(cfg, StopBeforeEpoch2())
    assert [s for s, _ in read_scalars(tmp_path / "r" / "tensorboard")["loss/train"]] == [1]
    result = train(cfg, resume=tmp_path / "r")
    scalars = read_scalars(tmp_path / "r" / "tensorboard")
    assert [s for s, _ in scalars["accuracy/test"]] == [1, 2]  # one value per epoch, none twice
    assert scalars["accuracy/test"][-1][1] == pytest.approx(result.final_accuracy)
