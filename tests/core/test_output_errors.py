"""Output paths that cannot be written: refused in one line, with what is in the way, and nothing left behind;
image grids kept to a size worth looking at, in modest memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnx.core import plots
from cnnx.core.errors import ConfigError
from cnnx.core.fileio import folder_problem
from tests.support import REPO


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    """A regular file where an output folder would have to be."""
    path = tmp_path / "f.txt"
    path.write_text("not a folder")
    return path


def test_folder_problem_names_the_file_in_the_way_and_leaves_nothing(tmp_path: Path, a_file: Path) -> None:
    assert folder_problem(a_file / "out" / "deeper") == f"{a_file} is a file, not a folder"
    assert folder_problem(a_file) == f"{a_file} is a file, not a folder"
    assert folder_problem(tmp_path / "new" / "deeper") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]  # the folders made to check are gone
    assert folder_problem(tmp_path / "kept", keep=True) is None
    assert (tmp_path / "kept").is_dir() and not any((tmp_path / "kept").iterdir())  # and no probe file left


def test_an_unwritable_picture_is_a_one_line_config_error(a_file: Path) -> None:
    images = np.zeros((3, 1, 8, 8), np.uint8)
    with pytest.raises(ConfigError) as caught:
        plots.save_grid(images, ["a", "b", "c"], a_file / "grid.png")
    assert str(caught.value) == (
        f"cannot write {a_file / 'grid.png'}: {a_file} is a file, not a folder (choose a writable --out path)"
    )
    with pytest.raises(ConfigError, match=r"^cannot write .*confusion\.png: .* is a file, not a folder"):
        plots.draw_confusion(np.eye(2, dtype=np.int64), ["a", "b"], a_file / "confusion.png")


def test_a_grid_holds_a_bounded_number_of_images(tmp_path: Path) -> None:
    many = np.zeros((plots.MAX_GRID_IMAGES + 1, 1, 8, 8), np.uint8)
    with pytest.raises(ConfigError, match=f"at most {plots.MAX_GRID_IMAGES} images"):
        plots.save_grid(many, ["x"] * len(many), tmp_path / "g.png")
    assert not (tmp_path / "g.png").exists()


# the largest grid cnnx samples draws (32x32 colour images: CIFAR-10's), its memory measured in a process of its own
BIGGEST_GRID = """
import json, resource, sys
import numpy as np
from pathlib import Path
from cnnx.core import plots
images = np.random.default_rng(0).integers(0, 256, (plots.MAX_GRID_IMAGES, 3, 32, 32), dtype=np.uint8)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
path = plots.save_grid(images, ["airplane"] * len(images), Path(sys.argv[1]), title="cifar10 train")
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps({"grown_mb": grown, "size": plots.png_size(path)}))
"""


def test_the_biggest_grid_takes_modest_memory(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", BIGGEST_GRID, str(tmp_path / "g.png")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    rows, cols, up = plots.grid_layout(plots.MAX_GRID_IMAGES, 32, 32, 8)
    assert result["size"] == [cols * (32 * up + 2 * up) + 2 * up, 24 + rows * (32 * up + 2 * up + 16) + 2 * up]
    # the picture is 20 MB of RGB pixels; drawn through a matplotlib figure it took 500 MB more
    assert result["grown_mb"] < 120, result
