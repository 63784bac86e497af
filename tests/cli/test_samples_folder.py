"""`cnnx samples FOLDER` with files it cannot read: each named on stderr with why, the rest drawn; a folder
with none readable is one line and exit 2, as a dataset that is not there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from tests.support import run_cli
from tests.support.images import write_image_folder

pytest.importorskip("torch")


def test_unreadable_images_are_named_and_the_rest_drawn(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "photos", ["a", "b"], per_class=6, size=(20, 20))
    (root / "a" / "broken.png").write_bytes(b"not a png")
    (root / "b" / "empty.jpg").write_bytes(b"")
    out = tmp_path / "grid.png"
    proc = run_cli("samples", str(root), "--out", str(out), "--first", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert out.is_file() and 0 < result["images"] <= 12  # the training split's readable images, drawn
    lines = proc.stderr.splitlines()
    assert lines[0] == "warning: 2 unreadable image(s) left out of the dataset:"
    assert sorted(line.split(": ")[1] for line in lines[1:]) == [
        str(root / "a" / "broken.png"),
        str(root / "b" / "empty.jpg"),
    ]
    assert all(line.startswith("warning: ") and len(line.split(": ")) >= 3 for line in lines[1:])  # and why
    assert len(result["skipped_images"]) == 2


def test_a_folder_with_no_readable_image_is_one_line(tmp_path: Path) -> None:
    root = tmp_path / "junk"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            (root / name / f"{i}.png").write_bytes(b"not a png")
    proc = run_cli("samples", str(root), "--out", str(tmp_path / "grid.png"))
    assert proc.returncode == 2 and not (tmp_path / "grid.png").exists()
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"error: {root}: none of the training images could be read (") and "Traceback" not in line


def test_a_grey_folder_is_drawn_grey_as_training_sees_it(tmp_path: Path) -> None:
    # cnnx train settles grey or colour from the images; samples must show the same, not RGB by default
    root = write_image_folder(tmp_path / "scans", ["a", "b"], per_class=5, size=(20, 20))
    for png in root.glob("*/*.png"):
        Image.open(png).convert("L").save(png)  # grey scans
    out = tmp_path / "grid.png"
    proc = run_cli("samples", str(root), "--out", str(out), "--json", check=True)
    result = json.loads(proc.stdout)
    assert (result["color"], result["input_shape"]) == ("L", [1, 20, 20])
    proc = run_cli("samples", str(root), "--out", str(out), "--rgb", "--json", check=True)
    assert json.loads(proc.stdout)["color"] == "RGB"
