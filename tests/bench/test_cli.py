"""`cnnx bench` run as a user runs it, on the 2-epoch mini-MNIST model: every column, the JSON schema, the chart."""

from __future__ import annotations

import datetime
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.support import run_cli

pytest.importorskip("torch")

# int8 of this small model may miss its gate, which is a row too
MEASURED = ("eager", "torchscript", "onnx", "onnx-fp16", "ort")
LABELS = {
    "eager": "PyTorch eager",
    "torchscript": "TorchScript",
    "onnx": "ONNX Runtime fp32",
    "onnx-int8": "ONNX Runtime int8",
    "onnx-fp16": "ONNX Runtime fp16",
    "ort": "ONNX Runtime, .ort",
    "openvino": "OpenVINO fp32",  # with the openvino extra (CI installs it)
    "executorch": "ExecuTorch .pte",  # with the executorch extra (CI installs it)
    "tflite": "LiteRT .tflite",  # with the litert extra, in its own environment (.ci/litert)
}
# the result's schema: key -> type(s)
TOP = {
    "command": str,
    "date": str,
    "machine": dict,
    "versions": dict,
    "threads": int,
    "options": dict,
    "source": dict,
    "images": dict,
    "exports": dict,
    "formats": dict,
    "ratios": dict,
    "targets": dict,
    "plot": str,
    "wall_seconds": float,
}
MACHINE = {
    "cpu": str,
    "cores": int,
    "usable_cores": int,
    "platform": str,
    "python": str,
    "load_average_before": list,
    "load_average_after": list,
}
ROW = {
    "label": str,
    "ok": bool,
    "file": (str, type(None)),
    "size_bytes": int,
    "method": str,
    "import_s": float,
    "load_ms": float,
    "peak_rss_mb": float,
    "accuracy": float,
    "images": int,
    "latency_ms": dict,
    "throughput": dict,
    "cold_start": dict,
}
TIMING = {"p50_ms": float, "p90_ms": float, "p99_ms": float, "mean_ms": float, "runs": int}
COLD = {"seconds": float, "runs_s": list, "peak_rss_mb": float, "command": str, "output": str}


@pytest.fixture(scope="module")
def benched(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    """`cnnx bench RUN --json` on a copy of the run's best.pt, with small timing budgets, after `cnnx export
    RUN --format torchscript`: (run folder, result, stderr). The TorchScript file's mtime before the bench is
    kept beside the run folder, in torchscript.mtime."""
    run = tmp_path_factory.mktemp("bench") / "run"
    run.mkdir()
    shutil.copy(trained_run / "best.pt", run / "best.pt")  # bench writes its exports beside the checkpoint
    run_cli("export", str(run), "--format", "torchscript", "--json", check=True)
    (run.parent / "torchscript.mtime").write_text(str((run / "best.torchscript").stat().st_mtime_ns))
    chart = run.parent / "chart.png"
    proc = run_cli(
        "bench", str(run), "--seconds", "0.2", "--cold-runs", "1", "--json", "--plot", str(chart), check=True
    )
    return run, json.loads(proc.stdout), proc.stderr  # stdout is the JSON only; progress went to stderr


def _check_types(data: dict[str, Any], schema: dict[str, Any], where: str) -> None:
    for key, kind in schema.items():
        assert key in data, f"{where}: no {key!r}"
        kinds = kind if isinstance(kind, tuple) else (kind,)
        value = data[key]
        # bool is an int to isinstance; a flag where a number belongs is a schema error
        ok = isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool))
        assert ok, f"{where}.{key}: {value!r} is not {kind}"


@pytest.mark.slow  # the whole bench run (every installed format: about a minute on two cores)
def test_json_schema(benched: tuple[Path, dict[str, Any], str]) -> None:
    _, result, _ = benched
    _check_types(result, TOP, "result")
    _check_types(result["machine"], MACHINE, "machine")
    assert set(result["versions"]) >= {"cnnx", "torch", "onnxruntime", "onnx", "numpy"}
    assert result["command"].startswith("cnnx bench ") and "--json" in result["command"]
    datetime.datetime.fromisoformat(result["date"])
    assert result["threads"] == 1 and result["options"]["seconds"] == 0.2
    assert result["images"]["dataset"] == "mnist" and result["images"]["images"] == 500
    assert list(result["formats"]) == [n for n in LABELS if n in result["formats"]]  # table order
    assert set(MEASURED) <= set(result["formats"]) <= set(LABELS)
    for name, row in result["formats"].items():
        if not row["ok"]:
            assert set(row) == {"label", "ok", "reason"} and isinstance(row["reason"], str)
            continue
        _check_types(row, ROW, name)
        _check_types(row["latency_ms"], TIMING, f"{name}.latency_ms")
        assert set(row["throughput"]) == {"64", "1024"}
        for b, t in row["throughput"].items():
            _check_types(t, {**TIMING, "images_per_s": float}, f"{name}.throughput.{b}")
        _check_types(row["cold_start"], COLD, f"{name}.cold_start")
    assert set(result["ratios"]) == set(result["targets"]) == {"onnx_latency_vs_eager", "onnx_throughput_1024_vs_eager"}
    for target in result["targets"].values():
        assert isinstance(target["met"], bool) and isinstance(target["value"], float)


@pytest.mark.slow  # the whole bench run (every installed format: about a minute on two cores)
def test_every_format_has_every_column_with_sane_values(benched: tuple[Path, dict[str, Any], str]) -> None:
    run, result, _ = benched
    rows = result["formats"]
    for name in MEASURED:
        row = rows[name]
        assert row["ok"] and row["label"] == LABELS[name]
        assert row["size_bytes"] > 10_000  # 75k float32 parameters: about 300 KB
        assert 0.5 < row["accuracy"] <= 1 and row["images"] == 500
        lat = row["latency_ms"]
        assert 0 < lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"] and lat["runs"] >= 20
        for b, t in row["throughput"].items():
            assert t["images_per_s"] == pytest.approx(int(b) / (t["p50_ms"] / 1000)) and t["runs"] >= 3
        assert row["load_ms"] > 0 and row["import_s"] > 0 and row["peak_rss_mb"] > 10
        assert row["cold_start"]["seconds"] > 0 and row["cold_start"]["peak_rss_mb"] > 10
    # every export passed parity against the checkpoint, so every format gets the same accuracy
    assert rows["torchscript"]["accuracy"] == rows["onnx"]["accuracy"] == rows["eager"]["accuracy"]
    # the exported files are the ones beside the checkpoint, sizes as on disk
    for name in ("torchscript", "onnx"):
        file = Path(rows[name]["file"])
        assert file.parent == run and rows[name]["size_bytes"] == file.stat().st_size
    assert result["source"]["size_bytes"] == (run / "best.pt").stat().st_size
    # the TorchScript file exported before is used as it is; only the formats missing are exported
    assert result["exports"]["reused"] == ["torchscript"] and "onnx" in result["exports"]["exported"]
    assert "torchscript" not in result["exports"]["exported"]
    assert str((run / "best.torchscript").stat().st_mtime_ns) == (run.parent / "torchscript.mtime").read_text()
    # the cold starts classified the same image the same way; ONNX's is the real `cnnx infer`
    label = rows["eager"]["cold_start"]["output"]
    assert label in [str(i) for i in range(10)] and rows["torchscript"]["cold_start"]["output"] == label
    for name in ("onnx", "onnx-fp16", "ort"):  # the files `cnnx infer` runs: their cold start is infer itself
        assert " infer --model " in rows[name]["cold_start"]["command"]
        assert rows[name]["cold_start"]["output"].split()[1] == label
    assert rows["ort"]["cold_start"]["command"].split(" infer --model ")[1].split()[0].endswith("best.ort")
    assert rows["onnx-fp16"]["size_bytes"] < 0.6 * rows["onnx"]["size_bytes"]
    int8 = rows.get("onnx-int8")
    assert int8 is None or int8["ok"] or "gate" in int8["reason"]
    ratio = result["ratios"]["onnx_latency_vs_eager"]
    assert ratio == pytest.approx(rows["onnx"]["latency_ms"]["p50_ms"] / rows["eager"]["latency_ms"]["p50_ms"])


@pytest.mark.slow  # the whole bench run (every installed format: about a minute on two cores)
def test_chart_is_a_png_of_the_expected_size(benched: tuple[Path, dict[str, Any], str]) -> None:
    from PIL import Image

    run, result, _ = benched
    assert result["plot"] == str(run.parent / "chart.png")
    with Image.open(result["plot"]) as img:
        assert img.format == "PNG" and img.size == (1400, 360)
        img.load()  # a truncated file fails here


@pytest.mark.slow  # a second whole bench run: 15-20 s on two busy cores
def test_table_reuses_gated_exports(benched: tuple[Path, dict[str, Any], str]) -> None:
    run, first, _ = benched
    onnx = run / "best.onnx"
    before = onnx.stat().st_mtime_ns
    proc = run_cli("bench", str(run / "best.pt"), "--seconds", "0.05", "--cold-runs", "1", "--no-plot", check=True)
    assert onnx.stat().st_mtime_ns == before  # parity.json names this checkpoint: not exported again
    assert "reusing" in proc.stderr and "exporting" not in proc.stderr and not (run / "bench.png").exists()
    # an int8 file that missed its gate is recorded in parity.json with why, and not retried
    skipped = json.loads((run / "parity.json").read_text())["skipped"]
    assert set(skipped) == ({"onnx-int8"} if not first["formats"].get("onnx-int8", {"ok": True})["ok"] else set())
    header, *lines = proc.stdout.splitlines()
    columns = [
        "format",
        "size",
        "accuracy",
        "b1 p50 us",
        "b1 p99 us",
        "b64 img/s",
        "b1024 img/s",
        "load ms",
        "peak MB",
        "cold start s",
    ]
    assert re.split(r"\s{2,}", header) == columns  # the table's columns are two or more spaces apart
    for name, row in first["formats"].items():
        cells = re.split(r"\s{2,}", next(x for x in lines if x.startswith(LABELS[name] + "  ")))
        assert len(cells) == len(columns) and (row["ok"] or set(cells[1:]) == {"-"})
    assert any(x.startswith("ONNX Runtime fp32 batch-1 latency / eager: ") for x in lines)
    assert any(x.startswith("ONNX Runtime fp32 batch-1024 throughput / eager: ") for x in lines)
    if not first["formats"].get("onnx-int8", {"ok": True})["ok"]:
        assert any(x.startswith("ONNX Runtime int8: not benchmarked: ") for x in lines)


@pytest.mark.slow  # the whole bench run (every installed format: about a minute on two cores)
def test_progress_holds_no_torch_deprecation_warning(benched: tuple[Path, dict[str, Any], str]) -> None:
    stderr = benched[2]
    assert "exporting " in stderr and "missing beside it" in stderr  # progress lines are on stderr
    assert "Warning" not in stderr and "deprecated" not in stderr, stderr


def test_missing_checkpoint_is_one_line_error(tmp_path: Path) -> None:
    proc = run_cli("bench", str(tmp_path / "nowhere"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: no checkpoint at ") and len(proc.stderr.strip().splitlines()) == 1


def test_timed_orders_percentiles_and_honours_min_runs() -> None:
    from cnnx.bench.worker import peak_rss_mb, timed

    calls = []
    t = timed(calls.append, 0, budget_s=0.0, min_runs=7, warmup=2)
    assert t["runs"] == 7 and len(calls) == 9
    assert 0 <= t["p50_ms"] <= t["p90_ms"] <= t["p99_ms"]
    assert peak_rss_mb() > 10
