"""The tflite format: a LiteRT flatbuffer (.tflite, fp32) made from the torch module by litert-torch, loaded
back by LiteRT's interpreter, gated on real and random inputs, its spec in the file's own metadata, run by
the edge runtime without torch, and refused when broken (exit 3, nothing left behind). With --int8, a
full-integer file beside it (.int8.tflite: int8 weights, activations, input and output), gated on decisions
and size against the fp32 file, run by the same commands.

litert-torch cannot be installed beside the dev extra (see pyproject's litert extra): these tests skip
there, and ``.ci/litert`` runs them in an environment of its own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support import MINI_MNIST, REPO, cnnx_without, run_cli

torch = pytest.importorskip("torch")
pytest.importorskip("litert_torch", reason="the litert extra is not installed: .ci/litert runs these tests")


@pytest.fixture(scope="module")
def made(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """`cnnx export RUN --format tflite --json` through the real CLI: (the folder, its report)."""
    out = tmp_path_factory.mktemp("tflite") / "mnist.onnx"
    proc = run_cli("export", str(trained_run), "--format", "tflite", "--out", str(out), "--json", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    return out.parent, json.loads(proc.stdout)


def test_export_writes_a_tflite_file_through_its_gate(made: tuple[Path, dict[str, Any]]) -> None:
    folder, report = made
    assert sorted(p.name for p in folder.iterdir()) == ["mnist.tflite", "parity.json"]
    r = report["formats"]["tflite"]
    assert r["passed"] and r["method"] == "litert-torch" and r["top1_agreement"] == 1.0
    assert r["real"]["max_abs_diff"] <= 1e-4 and r["random"]["max_abs_diff"] <= 1e-4
    assert r["size_bytes"] == (folder / "mnist.tflite").stat().st_size
    assert report["images"]["random_batches"] == [1, 2, 7, 64]  # one invoke each: the file's batch is resizable


def test_the_file_carries_its_spec_and_runs_any_batch_like_the_onnx_file(
    made: tuple[Path, dict[str, Any]], onnx_model: Path
) -> None:
    import onnxruntime as ort

    from cnnx.core.contract import normalise
    from cnnx.core.idx import read_idx
    from cnnx.export.formats import litert_tflite

    loaded = litert_tflite.load(made[0] / "mnist.tflite", 1)
    spec = loaded.spec()
    assert spec.extra["format"] == "tflite" and spec.extra["precision"] == "fp32"
    assert spec.extra["parity"]["passed"] and spec.arch == "mnist-bn16" and "litert-torch" in spec.versions
    session = ort.InferenceSession(str(onnx_model), providers=["CPUExecutionProvider"])
    x = normalise(read_idx(MINI_MNIST / "t10k-images-idx3-ubyte.gz")[:150, None], spec.mean, spec.std)
    for n in (1, 2, 37, 150):  # each batch in one invoke
        got = loaded.run(x[:n])
        assert got.shape == (n, 10) and got.dtype == np.float32
        np.testing.assert_allclose(got, session.run(None, {"input": x[:n]})[0], rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", ["mnist.tflite", "mnist.int8.tflite"])
def test_a_batch_runs_in_one_invoke_and_equals_the_images_run_one_by_one(
    made_int8: tuple[Path, dict], name: str
) -> None:
    from ai_edge_litert.interpreter import Interpreter

    from cnnx.core.contract import normalise
    from cnnx.core.idx import read_idx
    from cnnx.core.tfliteio import open_tflite
    from cnnx.export.formats import litert_tflite

    path = made_int8[0] / name
    spec = litert_tflite.load(path, 1).spec()
    interpreter, run = open_tflite(path, 1)
    detail = interpreter.get_input_details()[0]
    assert list(detail["shape_signature"]) == [-1, 1, 28, 28]  # converted at a batch of one, then freed
    x = normalise(read_idx(MINI_MNIST / "t10k-images-idx3-ubyte.gz")[:64, None], spec.mean, spec.std)
    one_by_one = np.concatenate([run(x[i : i + 1]) for i in range(len(x))])
    for n in (64, 7, 64):  # resized when the size changes, and back
        got = run(x[:n])
        assert list(interpreter.get_input_details()[0]["shape"]) == [n, 1, 28, 28]  # all n in one invoke
        np.testing.assert_allclose(got, one_by_one[:n], rtol=0, atol=1e-5)
    # LiteRT's own resize, as an application does it: a batch of n in one invoke, no cnnx in between
    bare = Interpreter(model_path=str(path), num_threads=1)
    bare.resize_tensor_input(detail["index"], [7, 1, 28, 28])
    bare.allocate_tensors()
    scale, zero = detail["quantization"]
    q = (x[:7] / np.float32(scale or 1)).astype(np.float64)  # int8: quantised as TFLite's QUANTIZE does
    feed = x[:7] if detail["dtype"] == np.float32 else np.clip(np.sign(q) * np.floor(np.abs(q) + 0.5) + zero, -128, 127)
    bare.set_tensor(detail["index"], feed.astype(detail["dtype"]))
    bare.invoke()
    out = bare.get_output_details()[0]
    got = bare.get_tensor(out["index"]).astype(np.float32)
    if out["dtype"] != np.float32:
        got = (got - out["quantization"][1]) * out["quantization"][0]
    assert got.shape == (7, 10)
    np.testing.assert_allclose(got, one_by_one[:7], rtol=0, atol=1e-5)


def test_weight_changed_in_the_file_fails_and_leaves_nothing(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnx.export.formats import litert_tflite
    from tests.support import export_with_nudged_bias

    result, left = export_with_nudged_bias(
        litert_tflite, "tflite", trained_run / "best.pt", tmp_path / "models", monkeypatch
    )
    assert result.exit_code == 3, result.output
    assert "no tflite export passed" in result.stderr and "exceeds 0.0001" in result.stderr
    assert "litert-torch:" in result.stderr
    assert left == ["keep.txt"]


def test_infer_runs_the_file_without_torch(made: tuple[Path, dict[str, Any]], onnx_model: Path) -> None:
    digit = REPO / "cnnx" / "samples" / "digits" / "mnist-3.png"
    proc = cnnx_without("torch", "infer", "--model", str(made[0] / "mnist.tflite"), str(digit), "--json")
    assert proc.returncode == 0, proc.stderr
    *lines, modules = proc.stdout.strip().splitlines()
    answer = json.loads(lines[-1])
    assert json.loads(modules) == []  # neither torch nor onnx entered the process
    reference = json.loads(run_cli("infer", "--model", str(onnx_model), str(digit), "--json", check=True).stdout)
    assert answer["label"] == reference["label"] and abs(answer["probability"] - reference["probability"]) < 1e-4
    assert proc.stderr == ""  # LiteRT's notes on stderr are held


def test_inspect_reads_the_spec_and_the_fixed_batch(made: tuple[Path, dict[str, Any]]) -> None:
    info = json.loads(run_cli("inspect", str(made[0] / "mnist.tflite"), "--json", check=True).stdout)
    assert info["kind"] == "tflite" and info["spec"]["arch"] == "mnist-bn16" and info["parity"]["passed"]
    assert info["inputs"][0]["shape"] == [1, 1, 28, 28] and info["outputs"][0]["shape"] == [1, 10]
    assert info["selfcheck"]["images"] == 8 and info["selfcheck"]["format"] == "tflite"


def test_verify_runs_the_self_check_the_file_carries_without_torch(made: tuple[Path, dict[str, Any]]) -> None:
    proc = cnnx_without("torch", "verify", str(made[0] / "mnist.tflite"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("pass: ") and "(tflite)" in proc.stdout and "ai-edge-litert" in proc.stdout


def test_a_cut_short_file_is_refused_in_one_line(made: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    cut = tmp_path / "cut.tflite"
    cut.write_bytes((made[0] / "mnist.tflite").read_bytes()[:5000])
    digit = REPO / "cnnx" / "samples" / "digits" / "mnist-3.png"
    proc = run_cli("infer", "--model", str(cut), str(digit))
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"error: {cut} is not a readable TFLite flatbuffer (cut short or corrupt")


def test_serve_holds_a_tflite_file_beside_the_onnx_one(
    made: tuple[Path, dict[str, Any]], onnx_model: Path, tmp_path: Path
) -> None:
    import shutil

    from tests.serve.client import Server
    from tests.serve.conftest import DIGITS

    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(onnx_model, folder / "mnist.onnx")
    shutil.copy(made[0] / "mnist.tflite", folder / "mnist.tflite")
    seven = (DIGITS / "mnist-7.png").read_bytes()
    srv = Server("--model", str(folder))
    try:
        index = srv.request("POST", "/v2/repository/index").json
        assert sorted(m["name"] for m in index) == ["mnist", "mnist.tflite"]
        onnx = srv.post_image(seven, "/predict?model=mnist").json["predictions"][0]
        reply = srv.post_image(seven, "/predict?model=mnist.tflite")
        assert reply.status == 200 and reply.json["model"] == "mnist.tflite"
        got = reply.json["predictions"][0]
        assert got["label"] == onnx["label"] and got["probability"] == pytest.approx(onnx["probability"], abs=1e-4)
        meta = srv.get("/v2/models/mnist.tflite").json
        assert meta["platform"] == "tflite" and meta["inputs"][0]["shape"] == [-1, 1, 28, 28]
    finally:
        assert srv.stop() == 0


def _write_idx(path: Path, array: np.ndarray) -> None:
    import gzip

    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


@pytest.fixture(scope="module")
def confident(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MNIST folder: the mini training split (calibration images) and, as its test split, only the mini
    test digits the checkpoint classifies with a logit margin >= 4. int8 rounding moves these logits by a few
    tenths, so no decision flips by chance on any CPU and the int8 pass path is tested deterministically."""
    import shutil

    from cnnx.core.contract import normalise
    from cnnx.core.idx import read_idx
    from cnnx.export.source import load_source

    folder = tmp_path_factory.mktemp("confident")
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        shutil.copy(MINI_MNIST / name, folder / name)
    images, labels = (read_idx(MINI_MNIST / f"t10k-{k}-idx{d}-ubyte.gz") for k, d in (("images", 3), ("labels", 1)))
    src = load_source(trained_run / "best.pt", None, None, None, None)
    with torch.inference_mode():
        logits = src.model.eval()(torch.from_numpy(normalise(images[:, None], src.spec.mean, src.spec.std)))
    top2 = logits.topk(2, dim=1).values
    keep = ((top2[:, 0] - top2[:, 1]) >= 4).numpy().nonzero()[0]
    assert len(keep) >= 200, len(keep)
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", images[keep])
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels[keep])
    return folder


@pytest.fixture(scope="module")
def made_int8(trained_run: Path, confident: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """`cnnx export RUN --format tflite --int8 --json` through the real CLI: (the folder, its report)."""
    out = tmp_path_factory.mktemp("tflite-int8") / "mnist.onnx"
    proc = run_cli(
        "export", str(trained_run), "--format", "tflite", "--int8", "--data-dir", str(confident),
        "--out", str(out), "--json", "--threads", "1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out.parent, json.loads(proc.stdout)


def test_int8_asks_for_the_int8_file_of_each_fp32_format_that_has_one() -> None:
    from cnnx.export.options import ExportOptions

    assert ExportOptions(format="tflite", int8=True).names == ["tflite", "tflite-int8"]
    assert ExportOptions(format="onnx", int8=True).names == ["onnx", "onnx-int8"]
    names = ExportOptions(format="all", int8=True).names
    assert names[-2:] == ["onnx-int8", "tflite-int8"] and "tflite-int8" not in ExportOptions(format="all").names


def test_int8_export_writes_a_full_integer_file_through_its_gate(made_int8: tuple[Path, dict]) -> None:
    from ai_edge_litert import schema_py_generated as schema

    folder, report = made_int8
    assert sorted(p.name for p in folder.iterdir()) == ["mnist.int8.tflite", "mnist.tflite", "parity.json"]
    r = report["formats"]["tflite-int8"]
    assert r["passed"] and r["method"] == "per-channel" and r["agreement_with"] == "tflite"
    assert r["top1_agreement"] >= 0.998 and r["accuracy_drop_pp"] <= 0.1 and r["images"] >= 200
    size, fp32 = (folder / "mnist.int8.tflite").stat().st_size, (folder / "mnist.tflite").stat().st_size
    assert r["size_bytes"] == size and r["size_ratio"] == pytest.approx(size / fp32) and size <= 0.30 * fp32
    assert r["real"]["max_abs_diff"] > 1e-3  # really quantised: not the fp32 numbers
    # full-integer: every tensor of the graph is an integer one, the input and output int8
    data = (folder / "mnist.int8.tflite").read_bytes()
    graph = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0)).subgraphs[0]
    types = {graph.tensors[i].type for op in graph.operators for i in [*op.inputs, *op.outputs] if i >= 0}
    assert types <= {schema.TensorType.INT8, schema.TensorType.INT32}, types
    assert {graph.tensors[i].type for i in [*graph.inputs, *graph.outputs]} == {schema.TensorType.INT8}


def test_the_int8_file_carries_its_spec_and_runs_float_in_float_out(made_int8: tuple[Path, dict]) -> None:
    from cnnx.core.contract import normalise
    from cnnx.core.idx import read_idx
    from cnnx.core.tfliteio import signature
    from cnnx.export.formats import litert_tflite_int8

    folder = made_int8[0]
    loaded = litert_tflite_int8.load(folder / "mnist.int8.tflite", 1)
    spec = loaded.spec()
    assert spec.extra["format"] == "tflite" and spec.extra["precision"] == "int8" and spec.extra["parity"]["passed"]
    assert spec.extra["quantization"]["input_output"] == "int8" and "ai-edge-quantizer" in spec.versions
    fp32 = litert_tflite_int8.load(folder / "mnist.tflite", 1)
    x = normalise(read_idx(MINI_MNIST / "t10k-images-idx3-ubyte.gz")[:37, None], spec.mean, spec.std)
    got, want = loaded.run(x), fp32.run(x)
    assert got.shape == (37, 10) and got.dtype == np.float32
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.9 and np.abs(got - want).max() < 2
    out = signature((folder / "mnist.int8.tflite").read_bytes())["outputs"][0]
    steps = (got / out["quantization"]["scale"]) + out["quantization"]["zero_point"]  # dequantised int8 values
    np.testing.assert_allclose(steps, np.rint(steps), atol=1e-3)
    assert steps.min() >= -128 - 1e-3 and steps.max() <= 127 + 1e-3


def test_infer_inspect_and_verify_run_the_int8_file_without_torch(made_int8: tuple[Path, dict]) -> None:
    int8, fp32 = made_int8[0] / "mnist.int8.tflite", made_int8[0] / "mnist.tflite"
    digit = REPO / "cnnx" / "samples" / "digits" / "mnist-3.png"
    proc = cnnx_without("torch", "infer", "--model", str(int8), str(digit), "--json")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    *lines, modules = proc.stdout.strip().splitlines()
    assert json.loads(modules) == []
    reference = json.loads(run_cli("infer", "--model", str(fp32), str(digit), "--json", check=True).stdout)
    assert json.loads(lines[-1])["label"] == reference["label"]
    proc = cnnx_without("torch", "verify", str(int8))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("pass: ") and "(tflite-int8)" in proc.stdout and "int8)" in proc.stdout
    info = json.loads(run_cli("inspect", str(int8), "--json", check=True).stdout)
    assert info["kind"] == "tflite" and info["spec"]["extra"]["precision"] == "int8"
    (inp,) = info["inputs"]
    assert inp["type"] == "int8" and inp["shape"] == [1, 1, 28, 28] and inp["quantization"]["scale"] > 0
    assert info["outputs"][0]["type"] == "int8" and info["selfcheck"]["format"] == "tflite-int8"


def test_broken_weights_in_the_int8_file_fail_and_leave_nothing(
    trained_run: Path, confident: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An int8 file made from a model whose class-0 bias is 50 too high (class 0 wins almost everywhere,
    whatever the scale of the trained logits) misses the agreement gate: exit 3, and not even the fp32
    file that passed is written."""
    import copy

    from click.testing import CliRunner

    from cnnx.cli import main
    from cnnx.export.formats import litert_tflite_int8

    real_export = litert_tflite_int8.export

    def broken(model: Any, spec: Any, path: Any, **options: Any) -> Any:
        changed = copy.deepcopy(model)
        with torch.no_grad():
            dict(changed.named_parameters())["head.bias"][0] += 50.0
        return real_export(changed, spec, path, **options)

    monkeypatch.setattr(litert_tflite_int8, "export", broken)
    out = tmp_path / "models"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    args = ["export", str(trained_run / "best.pt"), "--format", "tflite", "--int8", "--data-dir", str(confident)]
    result = CliRunner().invoke(main, [*args, "--out", str(out), "--threads", "1"])
    assert result.exit_code == 3, result.output
    assert "no tflite-int8 export passed" in result.stderr and "top-1 agreement with tflite" in result.stderr
    assert "per-channel:" in result.stderr and "per-tensor:" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_an_int8_file_with_256_kb_of_weights_keeps_them_inside_the_flatbuffer(
    trained_run: Path, tmp_path: Path
) -> None:
    """ai-edge-quantizer writes a model with 256 KB of weights or more with its weights past the flatbuffer
    (at offsets in the file); the spec is added with them moved inside. CIFAR's network, whose BatchNorms
    follow their convs, comes out full-integer with each BatchNorm folded into its conv."""
    from ai_edge_litert import schema_py_generated as schema

    from cnnx.export.formats import litert_tflite_int8
    from cnnx.export.source import load_source
    from cnnx.train.models.nets import CifarBN

    torch.manual_seed(0)
    net = CifarBN().eval()
    spec = load_source(trained_run / "best.pt", None, None, None, None).spec
    spec = spec.replace(arch="cifar-bn", input_shape=(3, 32, 32), mean=(0.5,) * 3, std=(0.25,) * 3)
    x = np.random.default_rng(0).standard_normal((40, 3, 32, 32)).astype(np.float32)
    path = litert_tflite_int8.export(net, spec, tmp_path / "cifar.int8.tflite", calibration=x)
    data = path.read_bytes()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    assert sum(len(b.data) for b in model.buffers if b.data is not None) > 256 * 1024
    assert not any(b.offset for b in model.buffers) and len(data) < 2 * 256 * 1024
    codes = {
        max(model.operatorCodes[op.opcodeIndex].builtinCode, model.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode)
        for op in model.subgraphs[0].operators
    }
    assert schema.BuiltinOperator.MUL not in codes and schema.BuiltinOperator.ADD not in codes  # folded into the convs
    loaded = litert_tflite_int8.load(path, 1)
    assert loaded.spec().extra["precision"] == "int8"
    with torch.no_grad():
        want = net(torch.from_numpy(x[:8])).numpy()
    got = loaded.run(x[:8])
    assert got.shape == (8, 10) and np.abs(got - want).max() < 0.1 * np.abs(want).max()
