"""``cnnx bench``: the formats a model can ship as, compared on this CPU.

One core function, ``benchmark``. It makes sure the checkpoint has gated exports
(``cnnx.bench.exports``: the files beside it that their ``parity.json`` records for
this checkpoint, and ``export_checkpoint`` for the formats missing), then measures each format in fresh
processes (``cnnx.bench.worker``), so no format's imports, thread pools or allocator
weigh on another's numbers:

- a measuring process per format: import, load (the model/session construction
  alone is timed), one call at batch 1,024 then peak RSS, accuracy on the test
  images, batch-1 latency, throughput at batch 64 and 1,024;
- ``cold_runs`` whole-process cold starts per format: a process that imports what
  the format needs, loads the model, decodes one real test image from a PNG and
  prints its class. For ONNX that is the real ``cnnx infer --model FILE digit.png``.

Eager PyTorch ships as the model's code plus a weights file: the bench saves the
state_dict and spec with ``torch.save`` into a temporary file and times loading that.
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

import cnnx
from cnnx.bench.exports import ExportRequest, gated_exports
from cnnx.core.errors import ConfigError, ModelFileError
from cnnx.core.fileio import atomic_write, folder_problem
from cnnx.core.machine import machine_info, usable_cores
from cnnx.export import parity_data as images
from cnnx.export import shipped_files
from cnnx.export.formats import FORMATS
from cnnx.export.source import Source, load_source

# what is benchmarked, in table order: name -> the row's label
LABELS: dict[str, str] = {
    "eager": "PyTorch eager",
    "torchscript": "TorchScript",
    "onnx": "ONNX Runtime fp32",
    "onnx-int8": "ONNX Runtime int8",
    "onnx-fp16": "ONNX Runtime fp16",
    "ort": "ONNX Runtime, .ort",
    "openvino": "OpenVINO fp32",
    "executorch": "ExecuTorch .pte",
    "tflite": "LiteRT .tflite",
    "tflite-int8": "LiteRT .tflite int8",
}
# the files `cnnx infer` runs: their cold start is `cnnx infer` itself
EDGE = ("onnx", "onnx-int8", "onnx-fp16", "ort", "openvino", "tflite", "tflite-int8")
BATCHES = (64, 1024)  # throughput batch sizes, images per call
TARGETS = {"onnx_latency_vs_eager": ("<=", 1 / 3), "onnx_throughput_1024_vs_eager": (">=", 3.0)}
WORKER = [sys.executable, "-m", "cnnx.bench.worker"]  # a fresh process that loads one format only


@dataclass
class BenchOptions:
    seconds: float = 2.0  # timing budget per format and batch size (1, 64, 1024), seconds
    threads: int = 1  # intra-op threads of every format (torch and onnxruntime alike); 0 = every core
    cold_runs: int = 3  # whole-process cold starts per format; the median is reported
    data_dir: str | None = None  # dataset folder for the test images; None = the export's rules
    arch: str | None = None  # architecture of a bare state_dict (cnnx checkpoints name their own)
    plot: str | None = None  # bar chart PNG; None = bench.png beside the checkpoint, "" = none

    def __post_init__(self) -> None:
        if not self.seconds > 0:
            raise ConfigError(f"--seconds must be more than 0, got {self.seconds}")
        if self.threads < 0:
            raise ConfigError(f"--threads must be 0 (every core) or more, got {self.threads}")
        if self.cold_runs < 1:
            raise ConfigError(f"--cold-runs must be 1 or more, got {self.cold_runs}")


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    return {
        "cnnx": cnnx.__version__,
        "torch": str(torch.__version__),
        "onnxruntime": onnxruntime.__version__,
        "onnx": onnx.__version__,
        "numpy": np.__version__,
    }


def _worker(*args: str) -> str:
    """Run cnnx.bench.worker with ``args``; its stdout, or ModelFileError with the last line of its stderr."""
    proc = subprocess.run([*WORKER, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or ["no message"]
        raise ModelFileError(
            f"cnnx.bench.worker {' '.join(args[:2])} failed (exit code {proc.returncode}): {lines[-1]}"
        )
    return proc.stdout


def _cold_start(cmd: list[str]) -> dict[str, Any]:
    """One whole-process run of ``cmd``: seconds from start to exit, peak RSS in MiB, last line printed."""
    run = json.loads(_worker("spawn", *cmd))
    if run["returncode"] != 0:
        raise ModelFileError(f"{' '.join(cmd)} failed (exit code {run['returncode']})")
    return {
        "seconds": run["seconds"],
        "peak_rss_mb": run["peak_rss_mb"],
        "output": (run["stdout"].strip().splitlines() or [""])[-1],
    }


def _infer_command(file: Path, image: Path, threads: int) -> list[str]:
    # the installed console script, as a user runs it; python -m cnnx where there is none
    script = Path(sys.executable).parent / "cnnx"
    base = [str(script)] if script.is_file() else [sys.executable, "-m", "cnnx"]
    return [*base, "infer", "--model", str(file), str(image), "--threads", str(threads)]


def _cold_command(name: str, job: Path, file: Path, image: Path, threads: int) -> list[str]:
    if name in EDGE:
        return _infer_command(file, image, threads)
    return [*WORKER, "cold", str(job)]


@dataclass
class _Setting:
    """What every format's measurement shares."""

    opts: BenchOptions
    threads: int  # intra-op threads of every format
    work: Path  # the inputs every process reads: test images, the PNG, the job files
    say: Callable[[str], None]
    load_before: tuple[float, float, float]  # the machine's load average when the bench began


def _measure(s: _Setting, name: str, file: Path) -> dict[str, Any]:
    """One format, measured in a process of its own, then ``cold_runs`` whole-process cold starts."""
    payload = json.dumps(
        {
            "format": name,
            "file": str(file),
            "threads": s.threads,
            "seconds": s.opts.seconds,
            "batches": list(BATCHES),
            "batch_file": str(s.work / "batch.npy"),
            "test_x": str(s.work / "test_x.npy"),
            "test_y": str(s.work / "test_y.npy"),
            "image": str(s.work / "digit.png"),
        }
    ).encode()
    job = atomic_write(s.work / f"{name}.json", lambda f: f.write(payload))
    row = json.loads(_worker("measure", str(job)))
    cmd = _cold_command(name, job, file, s.work / "digit.png", s.threads)
    runs = [_cold_start(cmd) for _ in range(s.opts.cold_runs)]
    row["cold_start"] = {
        "seconds": float(np.median([r["seconds"] for r in runs])),
        "runs_s": [r["seconds"] for r in runs],
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "command": " ".join(cmd),
        "output": runs[0]["output"],
    }
    lat = row["latency_ms"]
    s.say(
        f"{LABELS[name]}: batch 1 p50 {1000 * lat['p50_ms']:.0f} us, {row['throughput']['1024']['images_per_s']:.0f} "
        f"img/s at 1024, cold start {row['cold_start']['seconds']:.2f} s"
    )
    return row


def _files(name: str, file: Path) -> list[Path]:
    """What a row ships: an export's file and its companions (OpenVINO's .bin); eager's checkpoint."""
    return shipped_files(name, file) if name in FORMATS else [file]


def _rows(s: _Setting, files: dict[str, dict[str, Any]], skipped: dict[str, str]) -> dict[str, dict[str, Any]]:
    """One row per format, in table order: measured, or left out with why."""
    rows: dict[str, dict[str, Any]] = {}
    for name, label in LABELS.items():
        if name in files:
            f = files[name]
            rows[name] = {
                "label": label,
                "ok": True,
                "file": str(f["file"]) if name != "eager" else None,
                "size_bytes": sum(p.stat().st_size for p in _files(name, Path(f["file"]))),
                "method": f["method"],
                **_measure(s, name, Path(f["file"])),
            }
        elif name in skipped:
            rows[name] = {"label": label, "ok": False, "reason": skipped[name]}
    rows["eager"]["shipped_as"] = "state_dict and spec saved with torch.save (loads with weights_only=True)"
    return rows


def _save_npy(f: Any, array: np.ndarray) -> None:
    np.save(f, array)


def _workspace(src: Source, data: images.ParityData, work: Path) -> Path:
    """Inputs every process reads; returns the eager weights file written into ``work``."""
    import torch
    from PIL import Image

    reps = -(-max(BATCHES) // len(data.test_x))  # a sample of 500 images is repeated to fill 1,024
    arrays = {
        "test_x": data.test_x,  # (N, C, H, W) float32, normalised
        "test_y": data.test_y,  # (N,) int64
        "batch": np.concatenate([data.test_x] * reps)[: max(BATCHES)],
    }  # (1024, C, H, W)
    for stem, array in arrays.items():
        atomic_write(work / f"{stem}.npy", functools.partial(_save_npy, array=array))
    # the first test image back in pixels, as a PNG: the image every cold start classifies
    mean = np.asarray(src.spec.mean, np.float32).reshape(-1, 1, 1)
    std = np.asarray(src.spec.std, np.float32).reshape(-1, 1, 1)
    pixels = np.clip(np.rint((data.test_x[0] * std + mean) * 255), 0, 255).astype(np.uint8)  # (C, H, W)
    image = Image.fromarray(pixels[0] if len(pixels) == 1 else pixels.transpose(1, 2, 0))
    atomic_write(work / "digit.png", lambda f: image.save(f, format="PNG"))
    weights = {"model": src.model.state_dict(), "spec": src.spec.to_dict()}
    return atomic_write(work / (src.path.stem + ".eager.pt"), lambda f: torch.save(weights, f))


def _ratio(rows: dict[str, Any], get: Callable[[dict[str, Any]], float]) -> float | None:
    if "onnx" not in rows or "eager" not in rows:
        return None
    return get(rows["onnx"]) / get(rows["eager"])


def _targets(rows: dict[str, Any]) -> tuple[dict[str, float | None], dict[str, dict[str, Any]]]:
    """(ratios, targets): ONNX fp32 against eager, and whether each meets ``TARGETS``."""
    ratios = {
        "onnx_latency_vs_eager": _ratio(rows, lambda r: r["latency_ms"]["p50_ms"]),
        "onnx_throughput_1024_vs_eager": _ratio(rows, lambda r: r["throughput"]["1024"]["images_per_s"]),
    }
    targets = {}
    for key, (op, bound) in TARGETS.items():
        value = ratios[key]
        met = None if value is None else (value <= bound if op == "<=" else value >= bound)
        targets[key] = {"target": f"{op} {bound:.3g}", "value": value, "met": met}
    return ratios, targets


def _result(
    src: Source, data: images.ParityData, exports: dict[str, Any], rows: dict[str, Any], s: _Setting
) -> dict[str, Any]:
    ratios, targets = _targets(rows)
    return {
        "command": None,  # how the run was asked for; the CLI fills it in
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {
            **machine_info(),
            "load_average_before": list(s.load_before),
            "load_average_after": list(os.getloadavg()),
        },
        "versions": _versions(),
        "threads": s.threads,
        "options": asdict(s.opts),
        "source": {
            "path": str(src.path),
            "kind": src.kind,
            "sha256": src.sha256,
            "arch": src.spec.arch,
            "parameters": sum(p.numel() for p in src.model.parameters()),
            "size_bytes": src.path.stat().st_size,
        },
        "images": {k: v for k, v in data.source.items() if k != "random_batches"},
        "exports": {"reused": exports["reused"], "exported": exports["exported"]},
        "formats": rows,
        "ratios": ratios,
        "targets": targets,
    }


def benchmark(source: Path, opts: BenchOptions, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Export ``source`` if needed, measure every format, draw the chart; return the result.

    An unwritable chart path is refused before any work; a chart that still cannot be written at
    the end leaves the result whole, with "plot" None and why in "plot_error"."""
    say = progress or (lambda _msg: None)
    t_start, load_before = time.perf_counter(), os.getloadavg()
    threads = opts.threads or usable_cores()
    src = load_source(Path(source), opts.arch)
    chart = _chart_path(opts, src)  # refused now, not after minutes of measuring
    exports = gated_exports(src, ExportRequest(opts.data_dir, opts.arch, threads), say)
    data = images.load_images(src.spec, Path(opts.data_dir) if opts.data_dir else None, src.train_config)
    n = data.source["images"]
    say(
        f"test images: {n} {data.source['dataset']} image{'s' * (n != 1)} from {data.source['folder']}; "
        f"{threads} thread(s) per format, {opts.seconds:g} s per batch size"
    )
    s = _Setting(opts, threads, Path(tempfile.mkdtemp(prefix="cnnx-bench-")), say, load_before)
    try:
        eager = _workspace(src, data, s.work)
        rows = _rows(s, {"eager": {"file": eager, "method": "state_dict"}, **exports["files"]}, exports["skipped"])
    finally:
        shutil.rmtree(s.work, ignore_errors=True)
    result = _result(src, data, exports, rows, s)
    result["plot"] = None
    if chart is not None:
        from cnnx.bench.report import plot

        try:
            result["plot"] = str(plot(result, chart))
        except ConfigError as exc:
            # the measurements are the result: the caller prints them, then this error
            result["plot_error"] = str(exc)
    result["wall_seconds"] = time.perf_counter() - t_start
    return result


def _chart_path(opts: BenchOptions, src: Source) -> Path | None:
    """Where the chart goes (None: no chart), once its folder is known to take a file."""
    if opts.plot == "":
        return None
    path = Path(opts.plot) if opts.plot else src.path.parent / "bench.png"
    why = folder_problem(path.parent)
    if why:
        raise ConfigError(f"cannot write the chart {path}: {why}", "pick another --plot, or --no-plot")
    return path
