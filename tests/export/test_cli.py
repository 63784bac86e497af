"""`cnnx export --format all` and `cnnx inspect`, run as a user runs them, checked with real onnxruntime sessions."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support import MINI_MNIST, REPO, run_cli

# the formats made only where their extra is installed (tflite's litert-torch: an environment of its own)
OPTIONAL = ("openvino", "executorch", "tflite")

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def exported(export_all: tuple[Path, dict[str, Any], str]) -> tuple[Path, dict[str, Any], str]:
    """The 2-epoch run (its best.pt) exported in every format through the real CLI with --json, once
    per session (tests/conftest.py): (folder of mnist.* files, report, stderr)."""
    return export_all


@pytest.fixture
def run_copy(trained_run: Path, tmp_path: Path) -> Path:
    """A run folder of its own: the 2-epoch run's best.pt, and a last.pt that is another checkpoint."""
    import torch

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(trained_run / "best.pt", run / "best.pt")
    last = torch.load(trained_run / "best.pt", weights_only=True)
    last["epoch"] += 1  # a different file, so which one was exported shows in the sha256
    torch.save(last, run / "last.pt")
    return run


def _images(n: int, mean: float, std: float) -> tuple[np.ndarray, np.ndarray]:
    """The first n mini-MNIST test images as the model takes them: (n, 1, 28, 28) float32, normalised."""
    from cnnx.core.idx import read_idx

    x = read_idx(MINI_MNIST / "t10k-images-idx3-ubyte.gz")[:n].astype(np.float32) / 255.0
    y = read_idx(MINI_MNIST / "t10k-labels-idx1-ubyte.gz")[:n]
    return ((x - mean) / std)[:, None].astype(np.float32), y


def _torch_logits(checkpoint: Path, x: np.ndarray) -> np.ndarray:
    import torch

    from cnnx.export.source import load_source

    with torch.inference_mode():
        return load_source(checkpoint).model(torch.from_numpy(x)).numpy()


def test_all_formats_written_with_passing_parity_report(exported: tuple[Path, dict[str, Any], str]) -> None:
    out, report, _ = exported
    from cnnx.export.formats import NOT_MADE, missing

    files = ["mnist.fp16.onnx", "mnist.onnx", "mnist.ort", "mnist.required_operators.config", "mnist.torchscript"]
    files += ["mnist.bin", "mnist.xml"] if not missing("openvino") else []  # the optional formats, when installed
    files += ["mnist.pte", "mnist.pte.json", "mnist.bpte"] if not missing("executorch") else []
    files += ["mnist.tflite"] if not missing("tflite") else []  # litert-torch: in an environment of its own
    assert sorted(p.name for p in out.iterdir()) == sorted([*files, "parity.json"])
    assert json.loads((out / "parity.json").read_text()) == report
    assert report["images"]["images"] == 500 and report["images"]["random_batches"] == [1, 2, 7, 64]
    onnx_r, ts_r = report["formats"]["onnx"], report["formats"]["torchscript"]
    for r, atol in ((onnx_r, 1e-4), (ts_r, 1e-5)):
        assert r["passed"] and r["top1_agreement"] == 1.0
        assert r["real"]["max_abs_diff"] <= atol and r["random"]["max_abs_diff"] <= atol
        assert r["accuracy"] == pytest.approx(report["reference"]["accuracy"])
        assert set(r["latency_ms"]) == {"1", "64"} and all(v > 0 for v in r["latency_ms"].values())
    assert onnx_r["method"] in ("dynamo", "legacy") and ts_r["method"] in ("script", "trace")
    assert report["reference"]["accuracy"] > 0.5  # a trained model, so agreement is not trivially met
    optional = [n for n in OPTIONAL if not missing(n)]
    assert report["written"] == ["onnx", "torchscript", "onnx-fp16", "ort", *optional]  # every format installed
    left_out = {n: missing(n) for n in OPTIONAL if missing(n)}
    assert report["kept"] == [] and report["skipped"] == {**left_out, **NOT_MADE}  # each named, with why
    assert all(why.startswith("cnnx does not make this format yet") for why in NOT_MADE.values())


def test_export_prints_no_torch_deprecation_warning(exported: tuple[Path, dict[str, Any], str]) -> None:
    """torch.jit's script, save and load each warn that TorchScript is deprecated; the user asked for it."""
    assert exported[2] == ""  # --json: the report on stdout, and no progress, notice or warning on stderr


def test_onnx_contract_and_metadata_round_trip(exported: tuple[Path, dict[str, Any], str], trained_run: Path) -> None:
    import onnx
    import onnxruntime as ort

    from cnnx.core.spec import ModelSpec
    from cnnx.train.checkpoint import file_sha256, load_checkpoint

    path = exported[0] / "mnist.onnx"
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (outp,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, inp.shape) == ("input", "tensor(float)", ["batch", 1, 28, 28])
    assert (outp.name, outp.type, outp.shape) == ("logits", "tensor(float)", ["batch", 10])

    spec = ModelSpec.from_onnx_metadata(session.get_modelmeta().custom_metadata_map)
    trained = ModelSpec.from_dict(load_checkpoint(trained_run / "best.pt")["spec"])
    for field in ("arch", "input_shape", "color", "mean", "std", "classes", "preprocess", "dataset", "test_accuracy"):
        assert getattr(spec, field) == getattr(trained, field), field
    assert spec.checkpoint_sha256 == file_sha256(trained_run / "best.pt")
    assert set(spec.versions) >= {"cnnx", "torch", "onnx", "onnxruntime"}
    assert spec.extra["opset"] == 18 and spec.extra["exporter"] == exported[1]["formats"]["onnx"]["method"]
    parity = spec.extra["parity"]
    assert parity["passed"] and parity["images"] == 500 and parity["top1_agreement"] == 1.0
    # every value is a JSON string, so a runtime needs json.loads and nothing else
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert all(json.loads(v) is not None for k, v in props.items() if k.startswith("cnnx."))


def test_dynamic_batch_runs_at_1_and_37_and_matches_torch(
    exported: tuple[Path, dict[str, Any], str], trained_run: Path
) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(exported[0] / "mnist.onnx"), providers=["CPUExecutionProvider"])
    x, y = _images(37, 0.1307, 0.3081)
    expected = _torch_logits(trained_run / "best.pt", x)
    for n in (1, 37):
        (logits,) = session.run(["logits"], {"input": x[:n]})
        assert logits.shape == (n, 10) and logits.dtype == np.float32
        np.testing.assert_allclose(logits, expected[:n], rtol=0, atol=1e-4)
    assert (expected.argmax(1) == y).mean() > 0.5


def test_torchscript_carries_spec_and_matches_torch(
    exported: tuple[Path, dict[str, Any], str], trained_run: Path
) -> None:
    import torch

    from cnnx.train.runner import load_torchscript

    module, text = load_torchscript(exported[0] / "mnist.torchscript", "cnnx_spec.json")
    spec = json.loads(text)
    assert spec["arch"] == "mnist-bn16" and spec["extra"]["parity"]["passed"]
    x, _ = _images(37, spec["mean"][0], spec["std"][0])
    with torch.inference_mode():
        got = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, _torch_logits(trained_run / "best.pt", x), rtol=0, atol=1e-5)


def test_human_report_is_a_table(exported: tuple[Path, dict[str, Any], str]) -> None:
    from cnnx.export.report import render

    text = render(exported[1])
    lines = text.splitlines()
    onnx_row = next(line for line in lines if line.startswith("onnx "))  # the parity table comes first
    ts_row = next(line for line in lines if line.startswith("torchscript "))
    assert onnx_row.endswith("pass") and ts_row.endswith("pass") and "100.00%" in onnx_row
    assert "latency" in text and "parity.json" in text
    left_out = [line for line in lines if line.startswith("left out ")]
    assert left_out == [f"left out {n}: {why}" for n, why in exported[1]["skipped"].items()]


def test_report_warns_when_its_test_images_are_too_few_for_a_gate_on_agreement(
    exported: tuple[Path, dict[str, Any], str],
) -> None:
    """fp16 is gated on 99.9% top-1 agreement, which 500 images cannot show (none of 500 disagreeing
    leaves up to 0.6%): the report says so, and how many images would; the fp32 formats are gated on
    every logit too, and need no such line. With MNIST's 10,000 test images the line is gone."""
    from cnnx.export.report import render, thin_gates

    report = exported[1]
    assert thin_gates(report) == (["onnx-fp16"], 3000)
    (line,) = [line for line in render(report).splitlines() if line.startswith("warning:")]
    assert line.startswith("warning: onnx-fp16's top-1 agreement >= 99.90% rests on 500 test images, too few to")
    assert "up to 0.60% may" in line and "test set of 3,000 images" in line
    full = {**report, "images": {**report["images"], "images": 10_000}}
    assert thin_gates(full) == ([], 0) and "warning:" not in render(full)


def test_report_says_when_a_smaller_file_is_the_slower_one(exported: tuple[Path, dict[str, Any], str]) -> None:
    """fp16 and int8 save size; on a CPU without fast kernels for them they also cost time, which only the
    latency table showed. The timings here are set, not measured, so the test does not hang on this CPU's."""
    from cnnx.export.report import render, slower_than_fp32

    report = exported[1]

    def timed(fp16_ms: float) -> dict[str, Any]:
        formats = {name: {**f, "latency_ms": {"1": 0.05, "64": 2.0}} for name, f in report["formats"].items()}
        formats["onnx-fp16"]["latency_ms"] = {"1": 0.05, "64": fp16_ms}
        return {**report, "formats": formats}

    assert slower_than_fp32(timed(3.0)) == [("onnx-fp16", "onnx", 3.0, 2.0)]
    (note,) = [line for line in render(timed(3.0)).splitlines() if line.startswith("note: ")]
    assert note.startswith("note: onnx-fp16 took 1.5x the time of onnx at batch 64 here (3.00 vs 2.00 ms, ")
    assert note.endswith("it saves size, not time, on this CPU")
    assert slower_than_fp32(timed(2.1)) == [] and "note: " not in render(timed(2.1))  # within the timing's noise


@pytest.mark.slow  # two exports (about 25 s)
def test_format_all_without_openvino_names_what_it_left_out_and_why(trained_run: Path, tmp_path: Path) -> None:
    from tests.support import cnnx_without

    out = tmp_path / "models"
    proc = cnnx_without("openvino", "export", str(trained_run), "--format", "all", "--out", str(out), "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    said = {
        line.split(":")[0].removeprefix("left out "): line
        for line in proc.stdout.splitlines()
        if line.startswith("left out ")
    }
    from cnnx.export.formats import missing

    expected = ["openvino", *(n for n in OPTIONAL[1:] if missing(n))]
    assert list(said)[-len(expected) :] == expected  # FORMATS order
    assert "openvino is not installed" in said["openvino"] and 'pip install "cnnx[openvino]"' in said["openvino"]
    assert "openvino: left out (openvino is not installed" in proc.stderr  # the progress says it as it happens
    assert not list(out.glob("*.xml")) and not list(out.glob("*.bin")) and (out / "best.onnx").is_file()
    record = json.loads((out / "parity.json").read_text())
    assert list(record["skipped"]) == list(said) and "openvino" not in record["formats"]

    # --format onnx tries no other format: the folder's record still says why it has no OpenVINO file
    # (nor a .tflite, where litert-torch is missing)
    again = run_cli("export", str(trained_run), "--format", "onnx", "--out", str(out), "--json", "--threads", "1")
    report = json.loads(again.stdout)
    assert "openvino" in report["skipped"] and "torchscript" in report["kept"]
    assert ("tflite" in report["skipped"]) == bool(missing("tflite"))


def test_inspect_onnx_needs_neither_torch_nor_onnx(exported: tuple[Path, dict[str, Any], str]) -> None:
    code = (
        "import json, sys\n"
        "from cnnx.cli import main\n"
        f"try:\n    main(['inspect', {str(exported[0] / 'mnist.onnx')!r}, '--json'])\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx'))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    info_text, modules_line = proc.stdout.rsplit("\n", 2)[0], proc.stdout.strip().splitlines()[-1]
    assert json.loads(modules_line) == []
    info = json.loads(info_text)
    assert info["kind"] == "onnx" and info["opset"]["ai.onnx"] == 18 and info["ir_version"] >= 7
    assert info["inputs"] == [{"name": "input", "shape": ["batch", 1, 28, 28], "type": "tensor(float)"}]
    assert info["outputs"][0]["shape"] == ["batch", 10]
    assert info["spec"]["arch"] == "mnist-bn16" and info["parity"]["passed"]
    assert info["size_bytes"] == (exported[0] / "mnist.onnx").stat().st_size


def test_inspect_torchscript_and_checkpoint(exported: tuple[Path, dict[str, Any], str], trained_run: Path) -> None:
    from click.testing import CliRunner

    from cnnx.cli import main

    ts = json.loads(CliRunner().invoke(main, ["inspect", str(exported[0] / "mnist.torchscript"), "--json"]).stdout)
    assert ts["kind"] == "torchscript" and ts["spec"]["extra"]["torchscript"] in ("script", "trace")
    assert ts["outputs"][0]["shape"] == ["N", 10] and ts["parity"]["passed"]
    result = CliRunner().invoke(main, ["inspect", str(trained_run / "best.pt")])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "cnnx-checkpoint" in text and "mnist-bn16" in text and "epoch:" in text
    assert "best.pt accuracy: " in text and "% on the test split" in text and "parameters:" in text


def test_inspect_rejects_a_file_that_is_no_model(tmp_path: Path) -> None:
    junk = tmp_path / "notes.onnx"
    junk.write_text("not a model")
    proc = run_cli("inspect", str(junk))
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


def _sha(path: Path) -> str:
    from cnnx.train.checkpoint import file_sha256

    return file_sha256(path)


def test_a_run_folder_exports_its_best_pt_as_best_files(run_copy: Path) -> None:
    proc = run_cli("export", str(run_copy), "--exporter", "legacy", "--json", check=True)
    report = json.loads(proc.stdout)
    assert sorted(p.name for p in run_copy.iterdir()) == ["best.onnx", "best.pt", "last.pt", "parity.json"]
    assert report["source"]["path"] == str(run_copy / "best.pt") and report["formats"]["onnx"]["file"] == str(
        run_copy / "best.onnx"
    )
    assert report["source"]["sha256"] == _sha(run_copy / "best.pt") != _sha(run_copy / "last.pt")


def test_inspect_of_a_run_folder_reads_its_best_pt(run_copy: Path) -> None:
    proc = run_cli("inspect", str(run_copy), "--json", check=True)
    info = json.loads(proc.stdout)
    assert info["file"] == str(run_copy / "best.pt") and info["sha256"] == _sha(run_copy / "best.pt")
    assert info["kind"] == "cnnx-checkpoint" and info["spec"]["arch"] == "mnist-bn16"


def test_parity_json_keeps_a_format_until_its_file_is_replaced(run_copy: Path) -> None:
    def export(*args: str) -> dict[str, Any]:
        proc = run_cli("export", str(run_copy), "--exporter", "legacy", "--json", *args, check=True)
        report = json.loads(proc.stdout)
        assert json.loads((run_copy / "parity.json").read_text()) == report  # what it prints is what it records
        return report

    first = export("--format", "torchscript")
    torchscript = run_copy / "best.torchscript"
    before = torchscript.stat().st_mtime_ns
    second = export("--format", "onnx")  # a later call for another format keeps the TorchScript record
    assert list(second["formats"]) == ["onnx", "torchscript"]
    assert second["written"] == ["onnx"] and second["kept"] == ["torchscript"]
    assert second["formats"]["torchscript"] == first["formats"]["torchscript"]
    assert torchscript.stat().st_mtime_ns == before and _sha(torchscript) == first["formats"]["torchscript"]["sha256"]
    # a file changed since it was checked is no longer vouched for; the format made again is replaced
    torchscript.write_bytes(torchscript.read_bytes() + b"\0")
    third = export("--format", "onnx")
    assert list(third["formats"]) == ["onnx"] and third["kept"] == []
    assert third["formats"]["onnx"]["sha256"] == _sha(run_copy / "best.onnx")
    assert third["stale"] == ["best.torchscript"]  # still there, vouched for by nothing: said, not kept silently
    # the checkpoint trained on (changed): the ONNX file of the one before is stale, and the text says so
    import torch

    checkpoint = torch.load(run_copy / "best.pt", weights_only=True)
    first_weight = next(k for k, v in checkpoint["model"].items() if v.is_floating_point())
    checkpoint["model"][first_weight] += 0.01
    torch.save(checkpoint, run_copy / "best.pt")
    proc = run_cli("export", str(run_copy), "--exporter", "legacy", "--format", "torchscript", check=True)
    assert "warning: best.onnx in the same folder no longer matches this checkpoint" in proc.stdout, proc.stdout
    assert json.loads((run_copy / "parity.json").read_text())["stale"] == ["best.onnx"]


def test_out_named_like_a_format_not_written_gets_a_note(trained_run: Path, tmp_path: Path) -> None:
    proc = run_cli("export", str(trained_run), "--format", "torchscript", "--out", str(tmp_path / "m.int8.onnx"))
    assert proc.returncode == 0 and (tmp_path / "m.torchscript").is_file(), proc.stderr
    assert f"note: --out {tmp_path / 'm.int8.onnx'} has the suffix of onnx-int8 files" in proc.stderr
    assert proc.stderr.rstrip().endswith("add --int8 for one")


def test_an_exported_file_is_refused_as_the_source_with_the_way_out(
    exported: tuple[Path, dict[str, Any], str], tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from cnnx.cli import main

    renamed = tmp_path / "model.pt"  # TorchScript under a checkpoint's name is found by its contents
    shutil.copy(exported[0] / "mnist.torchscript", renamed)
    cases = [
        (exported[0] / "mnist.onnx", "ONNX"),
        (exported[0] / "mnist.torchscript", "TorchScript"),
        (renamed, "TorchScript"),
    ]
    for path, kind in cases:
        result = CliRunner().invoke(main, ["export", str(path), "--out", str(tmp_path / "o")])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert result.stderr.startswith(
            f"error: {path} is already an export ({kind}); cnnx export reads the checkpoint"
        )
        assert "give that run folder or .pt file" in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "o").exists()
