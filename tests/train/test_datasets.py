"""Dataset loading: local IDX folders (gzipped or not), the real download path, clear errors."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from cnnx.core.errors import DataNotFoundError  # noqa: E402
from cnnx.core.idx import read_idx  # noqa: E402
from cnnx.train.data import load_dataset  # noqa: E402
from cnnx.train.data.mnist import load_mnist  # noqa: E402
from tests.support import MINI_MNIST  # noqa: E402


def test_gzipped_folder_loads_real_digits() -> None:
    data = load_mnist(MINI_MNIST, download=False)
    assert data.train.x.shape == (1000, 1, 28, 28) and data.train.x.dtype == torch.uint8
    assert data.test.x.shape == (500, 1, 28, 28)
    assert data.train.y.dtype == torch.int64 and set(data.train.y.tolist()) == set(range(10))
    assert data.classes == [str(i) for i in range(10)] and data.preprocess == "mnist-digit"
    # real digits: mostly black background, ink near 255
    assert 0.08 < data.train.x.float().mean().item() / 255 < 0.2


def test_uncompressed_and_torchvision_layout(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in MINI_MNIST.glob("*.gz"):
        (raw / gz.stem).write_bytes(gzip.decompress(gz.read_bytes()))
    data = load_dataset("mnist", tmp_path, download=False)
    ref = load_mnist(MINI_MNIST, download=False)
    assert torch.equal(data.train.x, ref.train.x) and torch.equal(data.test.y, ref.test.y)


def test_missing_data_without_download_says_where_to_put_files(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as err:
        load_mnist(tmp_path, download=False)
    msg = str(err.value)
    assert str(tmp_path) in msg and "train-images-idx3-ubyte" in msg and "--data-dir" in msg


def test_truncated_idx_file_is_reported(tmp_path: Path) -> None:
    shutil.copytree(MINI_MNIST, tmp_path, dirs_exist_ok=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-100]))
    with pytest.raises(DataNotFoundError, match="truncated"):
        read_idx(path)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def mirror(monkeypatch: pytest.MonkeyPatch):
    """A local HTTP mirror serving the mini MNIST; torchvision's real download code fetches from it."""
    from torchvision.datasets import MNIST

    handler = lambda *a, **kw: _Quiet(*a, directory=str(MINI_MNIST), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    resources = [(p.name, hashlib.md5(p.read_bytes()).hexdigest()) for p in sorted(MINI_MNIST.glob("*.gz"))]
    monkeypatch.setattr(MNIST, "mirrors", [url])
    monkeypatch.setattr(MNIST, "resources", resources)
    yield url
    server.shutdown()


def test_download_path_fetches_into_data_dir(tmp_path: Path, mirror: str) -> None:
    data = load_mnist(tmp_path / "cache", download=True)
    assert (tmp_path / "cache" / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    assert len(data.train) == 1000 and len(data.test) == 500
    again = load_mnist(tmp_path / "cache", download=False)  # second use: no download needed
    assert torch.equal(again.train.x, data.train.x)


@pytest.fixture
def empty_mirror(tmp_path: Path):
    """A local HTTP server that answers every file with 404 Not Found."""
    served = tmp_path / "served"
    served.mkdir()
    handler = lambda *a, **kw: _Quiet(*a, directory=str(served), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def _train_mnist(data_dir: Path, out: Path) -> tuple[int, list[str]]:
    """`cnnx train mnist --data-dir DATA_DIR` in-process: the exit code and the lines it printed."""
    from click.testing import CliRunner

    from cnnx.cli import main

    result = CliRunner().invoke(main, ["train", "mnist", "--data-dir", str(data_dir), "--out", str(out)])
    return result.exit_code, result.output.strip().splitlines()


@pytest.mark.parametrize("server", ["http-404", "nothing-listening"])
def test_failed_download_says_why_and_creates_nothing(
    server: str, tmp_path: Path, empty_mirror: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchvision.datasets import MNIST

    url = empty_mirror if server == "http-404" else "http://127.0.0.1:9/"  # the discard port: nothing listens
    monkeypatch.setattr(MNIST, "mirrors", [url])
    target = tmp_path / "nonexistent" / "data"
    code, lines = _train_mnist(target, tmp_path / "run")
    why = "HTTP Error 404: File not found" if server == "http-404" else "Connection refused"
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(
        f"error: MNIST not found in {target} (download failed: train-images-idx3-ubyte.gz from {url}: {why}) (put "
    ), lines[0]
    assert not (tmp_path / "nonexistent").exists() and not (tmp_path / "run").exists()


def test_failed_download_into_an_existing_folder_leaves_it_as_it_was(
    tmp_path: Path, empty_mirror: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchvision.datasets import MNIST

    monkeypatch.setattr(MNIST, "mirrors", [empty_mirror])
    cache = tmp_path / "cache"
    (cache / "cifar-10-batches-py").mkdir(parents=True)
    (cache / "notes.txt").write_text("mine")
    code, lines = _train_mnist(cache, tmp_path / "run")
    assert code == 2 and "download failed: train-images-idx3-ubyte.gz" in lines[0]
    assert sorted(p.name for p in cache.iterdir()) == ["cifar-10-batches-py", "notes.txt"]  # no MNIST/raw left


def test_an_unwritable_run_folder_is_refused_before_any_epoch(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cnnx.cli import main

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "run"
    args = ["train", "mnist", "--data-dir", str(MINI_MNIST), "--out", str(out), "--epochs", "1", "--no-plots"]
    result = CliRunner().invoke(main, args)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    why = f"{blocker} is a file, not a folder"
    assert lines == [f"error: cannot write the run folder {out}: {why} (pick another --out)"]


def test_the_run_records_the_folder_its_data_came_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Trained with $CNNX_DATA_DIR and no --data-dir, the run still knows its folder: export's parity
    check, run without that variable, reads the same test images, not the sample shipped with cnnx."""
    import json

    from click.testing import CliRunner

    from cnnx.cli import main

    data = tmp_path / "data"
    shutil.copytree(MINI_MNIST, data)
    monkeypatch.setenv("CNNX_DATA_DIR", str(data))
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "mnist", "--out", str(run), "--epochs", "1", "--no-plots", "--json"])
    assert result.exit_code == 0, result.output
    assert Path(json.loads(result.stdout)["config"]["data_dir"]) == data
    monkeypatch.setenv("CNNX_DATA_DIR", str(tmp_path / "nothing-here"))
    result = CliRunner().invoke(main, ["export", str(run / "last.pt"), "--format", "onnx", "--json"])
    assert result.exit_code == 0, result.output
    images = json.loads(result.stdout)["images"]
    assert Path(images["folder"]) == data and not images["sample"], images
