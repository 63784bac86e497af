"""What `cnnx train` says, through the real command in a subprocess: progress on stderr (with --json
too), the last line when --save-min-acc is never reached, resuming a finished run."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")

from tests.support import MINI_MNIST, run_cli  # noqa: E402

# seed000-net on the shipped mini MNIST: one epoch in well under a second
QUICK = ["mnist", "--data-dir", str(MINI_MNIST), "--no-download", "--device", "cpu", "--arch", "seed000-net"]
QUICK += ["--batch-size", "64", "--no-plots"]


def test_json_result_on_stdout_progress_on_stderr(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ("--epochs", "2", "--out", str(run), "--json", "--no-amp", "--threads", "1")
    proc = run_cli("train", *QUICK, *args, check=True)
    summary = json.loads(proc.stdout)  # stdout holds the result and nothing else
    assert summary["epochs"] == 2 and summary["run_dir"] == str(run)
    assert summary["precision"] == "float32"
    assert summary["cpu_threads"] == 1  # what a bit-for-bit repeat needs besides the seed
    assert json.loads((run / "metrics.json").read_text())["cpu_threads"] == 1
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

    written = (run / "metrics.json").read_bytes()
    again = run_cli("train", "--resume", str(run), check=True)
    assert again.stdout.strip() == f"nothing to do: {run} finished its 1 epoch" and again.stderr == ""
    assert (run / "metrics.json").read_bytes() == written  # the finished run's record stays as it was


def test_the_last_line_names_the_checkpoints_when_best_pt_was_written(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = run_cli("train", *QUICK, "--epochs", "2", "--out", str(run), check=True)
    last = proc.stdout.strip().splitlines()[-1]
    summary = json.loads((run / "metrics.json").read_text())
    best = f"best.pt: epoch {summary['best_epoch']}, test accuracy {100 * summary['best_accuracy']:.2f}%"
    # best_accuracy is best.pt's test accuracy; the held-out accuracy that chose it has its own key
    chosen = summary["epoch_metrics"][summary["best_epoch"] - 1]
    assert summary["best_test_accuracy"] == summary["best_accuracy"] == chosen["test_accuracy"]
    assert (
        summary["best_holdout_accuracy"]
        == chosen["holdout_accuracy"]
        == max(m["holdout_accuracy"] for m in summary["epoch_metrics"])
    )
    assert last.startswith("done: seed000-net on mnist, 2 epochs, test accuracy ")
    assert f"({best}, chosen by held-out accuracy) in " in last
    assert last.endswith(f"; checkpoints in {run}")
    assert summary["best_checkpoint"] == str(run / "best.pt") and summary["epochs_trained"] == 2


def test_the_first_line_says_when_training_runs_in_bfloat16(tmp_path: Path) -> None:
    """--amp (the default on CPUs with AMX) is said up front: the figures of such a run differ from float32's."""
    proc = run_cli("train", *QUICK, "--epochs", "1", "--out", str(tmp_path / "run"), "--amp", "--json", check=True)
    assert ", device cpu, bfloat16 autocast;" in proc.stderr.splitlines()[0]
    assert json.loads(proc.stdout)["precision"] == "bfloat16 autocast"


def test_resuming_a_finished_run_says_so_at_once_without_reading_the_data(trained_run: Path, tmp_path: Path) -> None:
    """Whether a run has work left is in last.pt and metrics.json: the dataset (here made unreadable)
    is never read, nothing is written, and --json says what was not done and why."""
    import torch

    run = tmp_path / "moved"  # a run folder moved since it trained: paths are its new ones
    shutil.copytree(trained_run, run)
    state = torch.load(run / "last.pt", weights_only=True)
    state["config"]["data_dir"] = str(tmp_path / "gone")  # reading the data would fail: MNIST not found
    torch.save(state, run / "last.pt")
    written = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}

    proc = run_cli("train", "--resume", str(run), check=True)
    assert proc.stdout.strip() == f"nothing to do: {run} finished its 2 epochs" and proc.stderr == ""
    proc = run_cli("train", "--resume", str(run), "--json", check=True)
    result = json.loads(proc.stdout)
    recorded = json.loads(written["metrics.json"])
    assert result["nothing_to_do"] is True and result["reason"] == f"{run} finished its 2 epochs"
    assert result["epochs_trained"] == 0 and result["epochs"] == 2
    assert (result["run_dir"], result["best_checkpoint"]) == (str(run), str(run / "best.pt"))
    for key in ("final_accuracy", "best_epoch", "best_accuracy", "chosen_by", "epoch_metrics", "config"):
        assert result[key] == recorded[key], key
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == written


def test_a_run_stopped_before_its_metrics_json_writes_them_on_resume(trained_run: Path, tmp_path: Path) -> None:
    """last.pt holds every epoch, but the run stopped before metrics.json: that is work, not nothing to do."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "metrics.json").unlink()
    proc = run_cli("train", "--resume", str(run), check=True)
    assert proc.stdout.strip() == f"nothing left to train: {run} holds all 2 epochs; wrote metrics.json and the plots"
    assert len(json.loads((run / "metrics.json").read_text())["epoch_metrics"]) == 2
    again = json.loads(run_cli("train", "--resume", str(run), "--json", check=True).stdout)
    assert again["nothing_to_do"] is True and again["epochs_trained"] == 0
