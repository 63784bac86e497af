"""What `cnnx train` says, through the real command in a subprocess: progress on stderr (with --json
too), the last line when --save-min-acc is never reached, resuming a finished run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytest.importorskip("torch")

from tests.support import MINI_MNIST, run_cli  # noqa: E402

# seed000-net on the shipped mini MNIST: one epoch in well under a second
QUICK = ["mnist", "--data-dir", str(MINI_MNIST), "--no-download", "--device", "cpu", "--arch", "seed000-net"]
QUICK += ["--batch-size", "64", "--no-plots"]


def test_json_result_on_stdout_progress_on_stderr(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = run_cli("train", *QUICK, "--epochs", "2", "--out", str(run), "--json", "--no-amp", check=True)
    summary = json.loads(proc.stdout)  # stdout holds the result and nothing else
    assert summary["epochs"] == 2 and summary["run_dir"] == str(run)
    assert summary["precision"] == "float32"
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(
        "training seed000-net (21,840 parameters) on mnist (920 train / 80 held out / 500 test images), "
        "device cpu, float32;"
    )
    assert [line.split(":")[0] for line in lines[1:]] == ["epoch 1", "epoch 2"]
    assert f"test accuracy {100 * summary['final_accuracy']:.2f}%" in lines[-1]


def test_a_bar_no_epoch_reaches_is_said_and_a_finished_run_has_nothing_to_do(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = run_cli("train", *QUICK, "--epochs", "1", "--save-min-acc", "0.999", "--out", str(run), check=True)
    last = proc.stdout.strip().splitlines()[-1]
    reached = re.fullmatch(
        r"done: seed000-net on mnist, 1 epoch, test accuracy (\d+\.\d\d)% in [\d.]+ s on cpu; no epoch reached "
        r"--save-min-acc 0\.999 \(99\.90%\) in held-out accuracy \(best (\d+\.\d\d)%\): no best\.pt, only "
        r"last\.pt in " + re.escape(str(run)),
        last,
    )
    assert reached, last
    (epoch,) = json.loads((run / "metrics.json").read_text())["epoch_metrics"]
    assert float(reached.group(2)) == round(100 * epoch["holdout_accuracy"], 2) < 99.9
    assert sorted(p.name for p in run.iterdir()) == ["last.pt", "metrics.json"]
    assert json.loads((run / "metrics.json").read_text())["best_checkpoint"] is None

    again = run_cli("train", "--resume", str(run), check=True)
    assert again.stdout.strip() == f"nothing to do: {run} finished its 1 epoch"
    assert json.loads((run / "metrics.json").read_text())["epochs_trained"] == 0


def test_the_last_line_names_the_checkpoints_when_best_pt_was_written(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = run_cli("train", *QUICK, "--epochs", "2", "--out", str(run), check=True)
    last = proc.stdout.strip().splitlines()[-1]
    summary = json.loads((run / "metrics.json").read_text())
    best = f"best.pt: epoch {summary['best_epoch']}, test accuracy {100 * summary['best_accuracy']:.2f}%"
    assert last.startswith("done: seed000-net on mnist, 2 epochs, test accuracy ")
    assert f"({best}, chosen by held-out accuracy) in " in last
    assert last.endswith(f"; checkpoints in {run}")
    assert summary["best_checkpoint"] == str(run / "best.pt") and summary["epochs_trained"] == 2


def test_the_first_line_says_when_training_runs_in_bfloat16(tmp_path: Path) -> None:
    """--amp (the default on CPUs with AMX) is said up front: the figures of such a run differ from float32's."""
    proc = run_cli("train", *QUICK, "--epochs", "1", "--out", str(tmp_path / "run"), "--amp", "--json", check=True)
    assert ", device cpu, bfloat16 autocast;" in proc.stderr.splitlines()[0]
    assert json.loads(proc.stdout)["precision"] == "bfloat16 autocast"
