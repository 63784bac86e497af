"""CIFAR-10: generated batches in the real `cifar-10-batches-py` format, torchvision's download path, the CLI."""

from __future__ import annotations

import hashlib
import http.server
import json
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cnnx.core.errors import DataNotFoundError  # noqa: E402
from cnnx.train.data import load_dataset  # noqa: E402
from cnnx.train.data.cifar10 import FACTS, load_cifar10, locate_cifar10  # noqa: E402
from tests.support import (  # noqa: E402
    infer_json,
    run_cli,  # noqa: E402
    torch_probs,
)
from tests.support.images import CIFAR_CLASSES, cifar_tarball, class_images, write_cifar10  # noqa: E402


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cifar")
    write_cifar10(root, per_batch=60, test=100)
    return root


def test_batches_load_as_uint8_tensors_with_the_ten_names(cifar_root: Path) -> None:
    data = load_dataset("cifar10", cifar_root, download=False)
    assert data.train.x.shape == (300, 3, 32, 32) and data.train.x.dtype == torch.uint8
    assert data.test.x.shape == (100, 3, 32, 32) and data.test.y.dtype == torch.int64
    assert data.classes == CIFAR_CLASSES and data.color == "RGB" and data.preprocess == "resize"
    assert data.mean == FACTS.mean and data.hflip
    # the rows are R, G, B planes: image 0 of data_batch_1 comes back pixel for pixel
    entry = pickle.loads((cifar_root / "cifar-10-batches-py" / "data_batch_1").read_bytes(), encoding="latin1")
    assert np.array_equal(data.train.x[0].numpy().reshape(-1), entry["data"][0])
    assert data.train.y[:60].tolist() == entry["labels"]


def test_batches_folder_itself_and_its_parent_are_found(cifar_root: Path) -> None:
    assert locate_cifar10(cifar_root) == cifar_root / "cifar-10-batches-py"
    assert locate_cifar10(cifar_root / "cifar-10-batches-py") == cifar_root / "cifar-10-batches-py"


def test_missing_data_without_download_says_what_to_put_where(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as err:
        load_cifar10(tmp_path, download=False)
    msg = str(err.value)
    assert str(tmp_path) in msg and "cifar-10-batches-py" in msg and "data_batch_1" in msg and "--data-dir" in msg


def test_a_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path, per_batch=2, test=2)

    class Evil:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    (folder / "test_batch").write_bytes(pickle.dumps({"data": Evil(), "labels": [0]}, protocol=2))
    with pytest.raises(DataNotFoundError, match="refusing to load"):
        load_cifar10(tmp_path, download=False)
    assert not (tmp_path / "pwned").exists()


def test_truncated_batch_is_reported(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path, per_batch=4, test=4)
    raw = (folder / "data_batch_3").read_bytes()
    (folder / "data_batch_3").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataNotFoundError, match="data_batch_3"):
        load_cifar10(tmp_path, download=False)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_download_path_uses_torchvision_and_checks_md5s(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torchvision's real CIFAR10 download code fetches a generated archive from a local server."""
    from torchvision.datasets import CIFAR10

    src = write_cifar10(tmp_path / "src", per_batch=3, test=5)
    served = tmp_path / "www"
    served.mkdir()
    tgz = cifar_tarball(src, served / "cifar-10-python.tar.gz")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a, **kw: _Quiet(*a, directory=str(served), **kw))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(CIFAR10, "url", f"http://127.0.0.1:{server.server_address[1]}/cifar-10-python.tar.gz")
        monkeypatch.setattr(CIFAR10, "tgz_md5", _md5(tgz))
        monkeypatch.setattr(
            CIFAR10, "train_list", [[f"data_batch_{i}", _md5(src / f"data_batch_{i}")] for i in range(1, 6)]
        )
        monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", _md5(src / "test_batch")]])
        monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": _md5(src / "batches.meta")})
        data = load_cifar10(tmp_path / "cache", download=True)
        assert (tmp_path / "cache" / "cifar-10-batches-py" / "data_batch_5").is_file()
        assert len(data.train) == 15 and len(data.test) == 5
        # a corrupted archive fails its md5 check: one clear error, no traceback
        monkeypatch.setattr(CIFAR10, "tgz_md5", "0" * 32)
        with pytest.raises(DataNotFoundError, match="download failed"):
            load_cifar10(tmp_path / "other", download=True)
    finally:
        server.shutdown()


def test_unreachable_server_gives_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.datasets import CIFAR10

    monkeypatch.setattr(CIFAR10, "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")  # nothing listens
    with pytest.raises(DataNotFoundError) as err:
        load_cifar10(tmp_path, download=True)
    assert "download failed" in str(err.value) and "\n" not in str(err.value)


@pytest.fixture(scope="module")
def cifar_run(cifar_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """`cnnx train cifar10` through the CLI: seed003-net, 60x cheaper than the default cifar-bn
    (which test_train_folder trains)."""
    out = tmp_path_factory.mktemp("cifar-run") / "run"
    proc = run_cli(
        "train",
        "cifar10",
        "--arch",
        "seed003-net",
        "--data-dir",
        str(cifar_root),
        "--no-download",
        "--epochs",
        "3",
        "--batch-size",
        "16",
        "--out",
        str(out),
        "--device",
        "cpu",
        "--json",
        check=True,
    )
    return out, json.loads(proc.stdout)


def test_cli_trains_cifar10_and_the_spec_carries_the_dataset(cifar_run: tuple[Path, dict]) -> None:
    out, result = cifar_run
    assert result["arch"] == "seed003-net" and result["dataset"] == "cifar10"
    # chance is 0.1: well above it, the images and labels reached the loop intact
    assert result["epoch_metrics"][-1]["train_accuracy"] > 0.3 and result["best_accuracy"] > 0.3
    spec = torch.load(out / "best.pt", weights_only=True)["spec"]
    assert spec["input_shape"] == [3, 32, 32] and spec["color"] == "RGB" and spec["classes"] == CIFAR_CLASSES
    assert tuple(spec["mean"]) == FACTS.mean and spec["preprocess"] == "resize"
    assert (out / "curves.png").is_file() and (out / "confusion.png").is_file()


@pytest.mark.slow  # an export of every format and inference on new images (about 25 s): CI's slow step
def test_export_with_parity_then_infer_on_new_images(
    cifar_run: tuple[Path, dict], cifar_root: Path, tmp_path: Path
) -> None:
    from PIL import Image

    pytest.importorskip("onnxruntime")
    run, _ = cifar_run
    proc = run_cli(
        "export",
        str(run),
        "--format",
        "all",
        "--data-dir",
        str(cifar_root),
        "--out",
        str(tmp_path / "exp"),
        "--json",
        check=True,
    )  # exit 0: both parity gates passed
    report = json.loads(proc.stdout)
    # every format installed here passed (onnx and torchscript among them)
    assert {"onnx", "torchscript"} <= set(report["formats"]) and all(r["passed"] for r in report["formats"].values())
    x = torch.from_numpy(class_images(np.array([3, 8]), seed=99))  # a new cat and ship, (2, 3, 32, 32)
    files = []
    for i, img in enumerate(x):
        files.append(tmp_path / f"photo{i}.png")
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(files[-1])  # 32x32: "resize" keeps the pixels
    results = infer_json(next((tmp_path / "exp").glob("*.onnx")), *files)
    probs = torch_probs(run / "best.pt", x)
    for r, p in zip(results, probs, strict=False):
        assert r["label"] == CIFAR_CLASSES[int(p.argmax())]
        assert r["probability"] == pytest.approx(float(p.max()), abs=1e-4)


@pytest.mark.parametrize("arch", ["seed002-module", "seed002-tudui", "seed003-net"])
def test_every_seed_cifar_network_trains_one_step(cifar_root: Path, tmp_path: Path, arch: str) -> None:
    from cnnx.train.config import TrainConfig
    from cnnx.train.loop import train

    result = train(
        TrainConfig(
            dataset="cifar10",
            arch=arch,
            epochs=1,
            batch_size=100,
            data_dir=str(cifar_root),
            download=False,
            out=str(tmp_path / arch),
            device="cpu",
            plots=False,
        )
    )
    assert result.summary["arch"] == arch and 0 <= result.final_accuracy <= 1
    state = torch.load(tmp_path / arch / "last.pt", weights_only=True)
    assert state["spec"]["arch"] == arch and state["spec"]["classes"] == CIFAR_CLASSES
