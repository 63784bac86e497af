"""Checkpoints from elsewhere: seed-style bare state_dicts, CUDA-saved files, pickled whole models; and int8."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from cnnx.cli import main
from tests.support import MINI_MNIST, run_cli
from tests.support.seed_nets import Seed000, Seed002

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional


# The seed notes' own classes, as their scripts write them (000 `Net`, 002 `NET`).
Net, NET = Seed000, Seed002


def _seed_train(model: nn.Module, epochs: int) -> nn.Module:
    """What the seed scripts do, briefly: Adam on the mini MNIST normalised with MNIST's mean/std."""
    from cnnx.core.idx import read_idx

    torch.manual_seed(0)
    x = torch.from_numpy(read_idx(MINI_MNIST / "train-images-idx3-ubyte.gz").copy()).float()
    x = ((x / 255 - 0.1307) / 0.3081).unsqueeze(1)  # (1000, 1, 28, 28)
    y = torch.from_numpy(read_idx(MINI_MNIST / "train-labels-idx1-ubyte.gz").astype(np.int64))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(y)).split(50):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def seed000(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("seed000") / "model.pth"
    torch.save(_seed_train(Net(), 2).state_dict(), path)  # exactly what the seed script saves
    return path


@pytest.fixture(scope="module")
def seed002(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("seed002") / "net.pth"
    torch.save(_seed_train(NET(), 3).state_dict(), path)
    return path


def _write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file as MNIST ships them: magic 0x0000 08 NDIM, big-endian dims, uint8 data, gzipped."""
    import gzip

    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


@pytest.fixture(scope="module")
def confident_digits(seed002: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MNIST folder whose test split holds only real digits seed002 classifies with a logit margin >= 3.

    int8 rounding moves these logits by ~0.2, so no decision can flip by chance on any CPU and the
    int8 pass path is tested deterministically; the gate on unseen digits is what bench/ measures.
    """
    import shutil

    from cnnx.core.idx import read_idx

    folder = tmp_path_factory.mktemp("confident")
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        shutil.copy(MINI_MNIST / name, folder / name)  # calibration images
    images = np.concatenate([read_idx(MINI_MNIST / f"{s}-images-idx3-ubyte.gz") for s in ("t10k", "train")])
    labels = np.concatenate([read_idx(MINI_MNIST / f"{s}-labels-idx1-ubyte.gz") for s in ("t10k", "train")])
    model = NET()
    model.load_state_dict(torch.load(seed002))
    with torch.inference_mode():
        logits = model.eval()(torch.from_numpy(((images / 255 - 0.1307) / 0.3081)[:, None].astype(np.float32)))
    top2 = logits.topk(2, dim=1).values
    keep = ((top2[:, 0] - top2[:, 1]) >= 3).numpy().nonzero()[0][:400]
    assert len(keep) >= 200, len(keep)
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", images[keep])
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels[keep])
    return folder


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def test_seed_state_dict_exports_with_arch_and_passes_the_int8_gate(
    seed002: Path, confident_digits: Path, tmp_path: Path
) -> None:
    import onnx
    import onnxruntime as ort

    from cnnx.core.spec import ModelSpec
    from cnnx.train.checkpoint import file_sha256

    out = tmp_path / "out"
    proc = run_cli(
        "export",
        str(seed002),
        "--arch",
        "seed002-net",
        "--int8",
        "--exporter",
        "legacy",
        "--data-dir",
        str(confident_digits),
        "--out",
        str(out),
        "--json",
        check=True,
    )
    report = json.loads(proc.stdout)
    assert sorted(p.name for p in out.iterdir()) == ["net.int8.onnx", "net.onnx", "parity.json"]
    fp32, int8 = report["formats"]["onnx"], report["formats"]["onnx-int8"]
    assert fp32["passed"] and fp32["method"] == "legacy" and fp32["top1_agreement"] == 1.0
    assert int8["passed"] and int8["method"] in ("per-channel", "per-tensor")
    assert int8["size_ratio"] <= 0.30 and int8["size_bytes"] <= 0.30 * fp32["size_bytes"]
    assert int8["top1_agreement"] >= 0.998 and int8["agreement_with"] == "onnx"
    assert int8["accuracy_drop_pp"] <= 0.1 and report["reference"]["accuracy"] > 0.9
    assert int8["latency_ms"]["1"] > 0 and fp32["latency_ms"]["1"] > 0  # measured, whichever is faster

    proto = onnx.load(str(out / "net.int8.onnx"))
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # static QDQ, not dynamic quantisation
    assert any(t.data_type == onnx.TensorProto.INT8 for t in proto.graph.initializer)
    session = ort.InferenceSession(str(out / "net.int8.onnx"), providers=["CPUExecutionProvider"])
    spec = ModelSpec.from_onnx_metadata(session.get_modelmeta().custom_metadata_map)
    assert spec.extra["precision"] == "int8" and spec.extra["quantization"]["format"] == "QDQ"
    assert spec.extra["quantization"]["calibration_images"] == 500
    # the bare state_dict's spec comes from the architecture's dataset defaults
    assert (spec.arch, spec.mean, spec.std, spec.preprocess) == ("seed002-net", (0.1307,), (0.3081,), "mnist-digit")
    assert spec.classes == [str(i) for i in range(10)] and spec.checkpoint_sha256 == file_sha256(seed002)
    assert spec.test_accuracy == pytest.approx(report["reference"]["accuracy"])  # measured at export
    for n in (1, 37):
        (logits,) = session.run(["logits"], {"input": np.zeros((n, 1, 28, 28), np.float32)})
        assert logits.shape == (n, 10)


def test_seed000_with_dropout_overrides_and_the_shipped_sample(
    seed000: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxruntime as ort

    from cnnx.core.spec import ModelSpec

    names = "zero,one,two,three,four,five,six,seven,eight,nine"
    monkeypatch.setenv("CNNX_DATA_DIR", str(tmp_path / "no-data-here"))  # no dataset anywhere: use the sample
    result = _invoke(
        "export",
        str(seed000),
        "--arch",
        "seed000-net",
        "--format",
        "all",
        "--exporter",
        "legacy",
        "--classes",
        names,
        "--mean",
        "0.5",
        "--std",
        "0.25",
        "--json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["images"]["sample"] and report["images"]["images"] == 500
    assert report["images"]["folder"].endswith("samples/mnist")
    assert all(f["passed"] and f["top1_agreement"] == 1.0 for f in report["formats"].values())
    assert Path(report["formats"]["onnx"]["file"]) == seed000.with_suffix(".onnx")  # beside the checkpoint
    session = ort.InferenceSession(str(seed000.with_suffix(".onnx")), providers=["CPUExecutionProvider"])
    spec = ModelSpec.from_onnx_metadata(session.get_modelmeta().custom_metadata_map)
    assert spec.classes == names.split(",") and spec.mean == (0.5,) and spec.std == (0.25,)
    assert spec.test_accuracy is None  # 500 sample images do not measure a test accuracy


def test_a_cnnx_checkpoint_keeps_its_normalisation_and_classes(trained_run: Path, tmp_path: Path) -> None:
    # --mean/--std 0.5 on a checkpoint trained with 0.1307/0.3081 exported at 85% with every gate passed
    # (the reference was fed the same wrong numbers): refused, before anything is written
    result = _invoke("export", str(trained_run), "--mean", "0.5", "--std", "0.5", "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "was trained with mean 0.1307; --mean 0.5 would feed it other numbers than it learnt on" in result.stderr
    assert not (tmp_path / "o").exists()
    result = _invoke("export", str(trained_run), "--classes", "a,b,c", "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and "--classes names 3 classes; " in result.stderr, result.stderr
    assert "trained on 10 (0, 1, 2" in result.stderr and "--arch" not in result.stderr  # the user gave no --arch


def _save_as_if_on_cuda(obj: Any, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.save exactly as on a GPU machine: every storage tagged with device cuda:0."""
    import torch.serialization

    with monkeypatch.context() as m:
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(obj, path)


@pytest.mark.parametrize("kind", ["cnnx-checkpoint", "state_dict"])
def test_checkpoint_saved_on_cuda_exports_on_cpu(
    kind: str, trained_run: Path, seed000: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnx.train.checkpoint import load_checkpoint

    path = tmp_path / "cuda.pt"
    obj = load_checkpoint(trained_run / "best.pt") if kind == "cnnx-checkpoint" else torch.load(seed000)
    _save_as_if_on_cuda(obj, path, monkeypatch)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=True)  # proof the file really is CUDA-tagged
    arch = [] if kind == "cnnx-checkpoint" else ["--arch", "seed000-net"]
    result = _invoke("export", str(path), *arch, "--format", "torchscript", "--out", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / "cuda.torchscript").is_file() and "pass" in result.stdout


def test_pickled_whole_model_is_refused_with_the_way_out(tmp_path: Path) -> None:
    path = tmp_path / "whole.pth"
    torch.save(Net(), path)  # torch.save(model): unpickling it would run code
    result = _invoke("export", str(path), "--arch", "seed000-net", "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "pickled" in result.stderr and "torch.save(model.state_dict(), PATH)" in result.stderr
    assert not (tmp_path / "o").exists()


def test_bare_state_dict_needs_arch_and_is_told_which_fits(seed000: Path, tmp_path: Path) -> None:
    result = _invoke("export", str(seed000), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and "bare state_dict" in result.stderr
    assert "give --arch NAME (it fits: seed000-net)" in result.stderr
    wrong = _invoke("export", str(seed000), "--arch", "seed002-net", "--out", str(tmp_path / "o"))
    assert wrong.exit_code == 2 and "do not fit --arch seed002-net" in wrong.stderr
    assert "they fit: seed000-net" in wrong.stderr and not (tmp_path / "o").exists()


def test_nested_and_dataparallel_state_dicts_unwrap() -> None:
    from cnnx.core.errors import CheckpointError
    from cnnx.train.checkpoint import unwrap_state_dict
    from cnnx.train.models import fitting_archs

    state = Net().state_dict()
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}
    assert list(unwrap_state_dict(wrapped, Path("x.pth"))) == list(state)
    assert fitting_archs(state) == ["seed000-net"]
    with pytest.raises(CheckpointError, match="neither a cnnx checkpoint nor a state_dict"):
        unwrap_state_dict({"epoch": 3}, Path("x.pth"))


@pytest.mark.parametrize("content", [b"hello, not a checkpoint #\x01\x02", bytes(range(256)) * 8])
def test_a_file_that_is_no_checkpoint_is_named_so_without_the_unpicklers_words(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "weights.pt"
    path.write_bytes(content)
    proc = run_cli("export", str(path))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"error: {path} is not a torch checkpoint (it begins as neither of torch.save's formats) (give a "
        "checkpoint written by cnnx train, or weights saved with torch.save(model.state_dict(), PATH))"
    ]
