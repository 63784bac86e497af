"""`cnnx samples` with an output it cannot write or more images than a grid holds: one line, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnx.core import plots
from tests.support import MINI_MNIST, run_cli

pytest.importorskip("torch")

FROM_MINI_MNIST = ("--data-dir", str(MINI_MNIST), "--no-download")


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    """A regular file where the output folder would have to be."""
    path = tmp_path / "f.txt"
    path.write_text("not a folder")
    return path


def test_samples_refuses_an_unwritable_out_in_one_line(a_file: Path) -> None:
    proc = run_cli("samples", "mnist", *FROM_MINI_MNIST, "--out", str(a_file / "grid.png"))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: cannot write {a_file / 'grid.png'}: {a_file} is a file, not a folder (choose a writable --out path)"
    ]


def test_samples_refuses_too_many_images_in_one_line(tmp_path: Path) -> None:
    proc = run_cli("samples", "mnist", *FROM_MINI_MNIST, "--count", "100000", "--out", str(tmp_path / "grid.png"))
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: ") and str(plots.MAX_GRID_IMAGES) in line and "--count" in line
    assert not (tmp_path / "grid.png").exists()


def test_count_and_out_are_refused_before_the_dataset_is_read(tmp_path: Path, a_file: Path) -> None:
    nothing = ("--data-dir", str(tmp_path / "no-data"), "--no-download")  # reading it would fail
    proc = run_cli("samples", "mnist", *nothing, "--count", "100000")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"error: --count must be 1 to {plots.MAX_GRID_IMAGES}, got 100000"
    ]
    proc = run_cli("samples", "mnist", *nothing, "--out", str(a_file / "grid.png"))
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"error: cannot write {a_file / 'grid.png'}: {a_file} is a file, not a folder (choose a writable --out path)"
    ]


def test_help_states_the_count_a_grid_holds() -> None:
    from click.testing import CliRunner

    from cnnx.cli import main
    from cnnx.cli.tools import MAX_COUNT

    assert MAX_COUNT == plots.MAX_GRID_IMAGES
    text = " ".join(CliRunner().invoke(main, ["samples", "--help"]).output.split())
    assert f"Images in the grid, 1 to {plots.MAX_GRID_IMAGES}." in text
