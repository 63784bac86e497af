"""`cnnx infer --save-preprocessed` where no folder can be made: one line, exit 2, before any image is read."""

from __future__ import annotations

from pathlib import Path

from tests.support import REPO, run_cli

DIGIT = REPO / "cnnx" / "samples" / "digits" / "mnist-7.png"


def test_an_unmakeable_save_folder_is_refused_before_any_image(tmp_path: Path, shipped_model: Path) -> None:
    blocker = tmp_path / "f.txt"
    blocker.write_text("not a folder")
    folder = blocker / "seen"
    proc = run_cli("infer", str(DIGIT), "--model", str(shipped_model), "--save-preprocessed", str(folder))
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: cannot write the --save-preprocessed folder {folder}: {blocker} is a file, not a folder "
        "(pick another folder)"
    ]


def test_the_save_folder_is_made_with_its_parents(tmp_path: Path, shipped_model: Path) -> None:
    folder = tmp_path / "a" / "b"
    proc = run_cli("infer", str(DIGIT), "--model", str(shipped_model), "--save-preprocessed", str(folder))
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in folder.iterdir()] == ["mnist-7.png"]
