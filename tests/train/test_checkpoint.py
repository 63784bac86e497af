"""Checkpoints: complete, loadable with weights_only=True, atomic, and refusing pickled code."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from cnnx.core.errors import CheckpointError  # noqa: E402
from cnnx.core.spec import ModelSpec  # noqa: E402
from cnnx.train import checkpoint as ckpt  # noqa: E402
from cnnx.train.models import build_model  # noqa: E402


def test_checkpoint_round_trip_weights_only(trained_run: Path) -> None:
    state = torch.load(trained_run / "last.pt", map_location="cpu", weights_only=True)
    for key in ("model", "optimizer", "scheduler", "rng", "epoch", "config", "metrics", "spec"):
        assert key in state, key
    spec = ModelSpec.from_dict(state["spec"])
    assert spec.arch == "mnist-bn16" and spec.input_shape == (1, 28, 28)
    assert spec.mean == (0.1307,) and spec.std == (0.3081,)
    assert spec.classes == [str(i) for i in range(10)] and spec.preprocess == "mnist-digit"
    assert spec.test_accuracy == state["metrics"][-1]["test_accuracy"]
    model = build_model(spec.arch, spec.num_classes)
    model.load_state_dict(state["model"])  # strict: every key and shape matches
    assert state["epoch"] == 2 and state["config"]["epochs"] == 2


def test_best_checkpoint_is_the_epoch_with_the_best_held_out_accuracy(trained_run: Path) -> None:
    """Chosen on the images held out of training, never on the test split (the earliest epoch on a tie)."""
    best = ckpt.load_checkpoint(trained_run / "best.pt")
    metrics = ckpt.load_checkpoint(trained_run / "last.pt")["metrics"]
    chosen = max(metrics, key=lambda m: m["holdout_accuracy"])
    assert best["epoch"] == chosen["epoch"] and best["spec"]["test_accuracy"] == chosen["test_accuracy"]
    summary = json.loads((trained_run / "metrics.json").read_text())
    assert summary["chosen_by"] == "holdout_accuracy" and summary["best_epoch"] == chosen["epoch"]
    assert summary["best_accuracy"] == chosen["test_accuracy"] == best["best_accuracy"]


def test_failed_write_keeps_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "last.pt"
    ckpt.save_checkpoint({"epoch": 1}, target)

    def explode(f) -> None:
        f.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        ckpt.atomic_write(target, explode)
    assert ckpt.load_checkpoint(target)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "evil.pt"
    torch.save({"model": Evil()}, path)
    with pytest.raises(CheckpointError, match="refuses"):
        ckpt.load_checkpoint(path)
    assert not marker.exists()


def test_truncated_and_foreign_files(tmp_path: Path, trained_run: Path) -> None:
    cut = tmp_path / "cut.pt"
    cut.write_bytes((trained_run / "last.pt").read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        ckpt.load_checkpoint(cut)
    bare = tmp_path / "bare.pth"
    torch.save(build_model("seed000-net", 10).state_dict(), bare)
    with pytest.raises(CheckpointError, match="not a cnnx checkpoint"):
        ckpt.load_checkpoint(bare)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        ckpt.load_checkpoint(tmp_path / "missing")


def test_written_files_follow_the_umask_not_temp_file_privacy(tmp_path: Path) -> None:
    path = ckpt.save_checkpoint({"epoch": 1}, tmp_path / "last.pt")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


class _FailingFile:
    """The checkpoint's file, whose ``n``-th write raises ``exc``: a disk that fills up, or Ctrl-C, mid-save."""

    def __init__(self, f, n: int, exc: BaseException) -> None:
        self.f, self.n, self.exc = f, n, exc

    def write(self, data) -> int:
        self.n -= 1
        if self.n == 0:
            raise self.exc
        return self.f.write(data)

    def __getattr__(self, name: str):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_write_failing_inside_torch_save_keeps_the_previous_checkpoint(
    exc: BaseException, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch.save reports a failed write as a RuntimeError; save_checkpoint gives back what it was."""
    import cnnx.core.fileio

    target = ckpt.save_checkpoint({"epoch": 1}, tmp_path / "last.pt")
    real_fdopen = os.fdopen
    monkeypatch.setattr(cnnx.core.fileio.os, "fdopen", lambda fd, mode: _FailingFile(real_fdopen(fd, mode), 3, exc))
    big = {"epoch": 2, "w": torch.zeros(100_000), "v": torch.zeros(1000)}
    if isinstance(exc, OSError):
        with pytest.raises(CheckpointError) as info:
            ckpt.save_checkpoint(big, target)
        message = str(info.value)
        assert message.startswith(f"could not write {target}: the disk is full") and "\n" not in message
        assert "the previous last.pt is intact" in message and f"cnnx train --resume {tmp_path}" in message
    else:
        with pytest.raises(KeyboardInterrupt):
            ckpt.save_checkpoint(big, target)
    monkeypatch.undo()
    assert ckpt.load_checkpoint(target)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_first_checkpoint_failing_says_there_was_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cnnx.core.fileio

    def no_space(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cnnx.core.fileio.os, "fsync", no_space)
    with pytest.raises(CheckpointError, match=r"no earlier last.pt existed \(free some space, then run the same"):
        ckpt.save_checkpoint({"epoch": 1}, tmp_path / "last.pt")
    assert list(tmp_path.iterdir()) == []


def test_a_write_that_fails_for_another_reason_does_not_blame_the_disk(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(CheckpointError) as info:
        ckpt.save_checkpoint({"epoch": 1}, blocker / "last.pt")
    message = str(info.value)
    assert message.startswith(f"could not write {blocker / 'last.pt'}: "), message
    assert "free some space" not in message and f"make {blocker} writable" in message
