"""``cnnx bench``: the formats a model can ship as, compared on this CPU.

One core function, ``benchmark``. It makes sure the checkpoint has gated exports
(reusing the files beside it when their ``parity.json`` names this checkpoint's
sha256, else running ``export_checkpoint``), then measures each format in fresh
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
from cnnx.core.contract import PARITY_FILE
from cnnx.core.errors import ConfigError, ModelFileError
from cnnx.core.fileio import atomic_write
from cnnx.core.machine import machine_info, usable_cores
from cnnx.export import FORMATS, ExportOptions, export_checkpoint
from cnnx.export import parity_data as images
from cnnx.export.source import Source, load_source
from cnnx.train.checkpoint import file_sha256

# what is benchmarked, in table order: name -> the row's label
LABELS: dict[str, str] = {
    "eager": "PyTorch eager",
    "torchscript": "TorchScript",
    "onnx": "ONNX Runtime fp32",
    "onnx-int8": "ONNX Runtime int8",
}
EXPORTED = ("torchscript", "onnx", "onnx-int8")  # the formats that come from `cnnx export`
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


def _reusable(path: Path, sha: str) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Exports beside ``path`` that its parity.json records for this checkpoint, byte for byte, and the
    formats it records as left out (int8 that missed its gate), with why."""
    try:
        record = json.loads((path.parent / PARITY_FILE).read_text())
    except (OSError, ValueError):
        return {}, {}
    if not record.get("passed") or record.get("source", {}).get("sha256") != sha:
        return {}, {}
    found = {}
    for name, f in record.get("formats", {}).items():
        # parity.json keeps the path as the export was given it; the file is the one beside it
        file = path.parent / (path.stem + FORMATS[name].SUFFIX) if name in FORMATS else None
        if (
            file is not None
            and file.is_file()
            and Path(f.get("file", "")).name == file.name
            and file_sha256(file) == f.get("sha256")
        ):
            found[name] = {"file": file, "method": f.get("method"), "parity_accuracy": f.get("accuracy")}
    return found, dict(record.get("skipped") or {})


def _exports(src: Source, opts: BenchOptions, threads: int, say: Callable[[str], None]) -> dict[str, Any]:
    """The gated export files, exported now when those beside the checkpoint are missing or stale.

    One export makes them all; an int8 file that misses its gate is left out and parity.json says
    why, so a later bench reuses the fp32 files and reports the same reason instead of retrying.
    """
    found, skipped = _reusable(src.path, src.sha256)
    if all(name in found or name in skipped for name in EXPORTED):
        say(f"reusing {', '.join(str(f['file']) for f in found.values())} (parity.json names this checkpoint)")
        return {"files": found, "reused": list(found), "exported": [], "skipped": skipped}
    say(f"exporting {src.path} (the files are missing beside it)")
    report = export_checkpoint(
        src.path,
        ExportOptions(
            format="all", int8=True, int8_optional=True, data_dir=opts.data_dir, arch=opts.arch, threads=threads
        ),
        progress=say,
    )
    files = {
        name: {"file": Path(f["file"]), "method": f["method"], "parity_accuracy": f["accuracy"]}
        for name, f in report["formats"].items()
    }
    return {"files": files, "reused": [], "exported": list(files), "skipped": report["skipped"]}


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
    if name.startswith("onnx"):
        return _infer_command(file, image, threads)
    return [*WORKER, "cold", str(job)]


def _measure(
    name: str, file: Path, work: Path, opts: BenchOptions, threads: int, say: Callable[[str], None]
) -> dict[str, Any]:
    payload = json.dumps(
        {
            "format": name,
            "file": str(file),
            "threads": threads,
            "seconds": opts.seconds,
            "batches": list(BATCHES),
            "batch_file": str(work / "batch.npy"),
            "test_x": str(work / "test_x.npy"),
            "test_y": str(work / "test_y.npy"),
            "image": str(work / "digit.png"),
        }
    ).encode()
    job = atomic_write(work / f"{name}.json", lambda f: f.write(payload))
    row = json.loads(_worker("measure", str(job)))
    cmd = _cold_command(name, job, file, work / "digit.png", threads)
    runs = [_cold_start(cmd) for _ in range(opts.cold_runs)]
    row["cold_start"] = {
        "seconds": float(np.median([r["seconds"] for r in runs])),
        "runs_s": [r["seconds"] for r in runs],
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "command": " ".join(cmd),
        "output": runs[0]["output"],
    }
    lat = row["latency_ms"]
    say(
        f"{LABELS[name]}: batch 1 p50 {1000 * lat['p50_ms']:.0f} us, {row['throughput']['1024']['images_per_s']:.0f} "
        f"img/s at 1024, cold start {row['cold_start']['seconds']:.2f} s"
    )
    return row


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
        atomic_write(work / f"{stem}.npy", lambda f, a=array: np.save(f, a))
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


def benchmark(source: Path, opts: BenchOptions, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Export ``source`` if needed, measure every format, draw the chart; return the result."""
    say = progress or (lambda _msg: None)
    t_start, load_before = time.perf_counter(), os.getloadavg()
    threads = opts.threads or usable_cores()
    src = load_source(Path(source), opts.arch)
    exports = _exports(src, opts, threads, say)
    data = images.load_images(src.spec, Path(opts.data_dir) if opts.data_dir else None, src.train_config)
    say(
        f"test images: {data.source['images']} {data.source['dataset']} images from {data.source['folder']}; "
        f"{threads} thread(s) per format, {opts.seconds:g} s per batch size"
    )
    work = Path(tempfile.mkdtemp(prefix="cnnx-bench-"))
    try:
        eager = _workspace(src, data, work)
        files = {"eager": {"file": eager, "method": "state_dict"}, **exports["files"]}
        rows: dict[str, Any] = {}
        for name in LABELS:
            if name not in files:
                continue
            f = files[name]
            rows[name] = {
                "label": LABELS[name],
                "ok": True,
                "file": str(f["file"]) if name != "eager" else None,
                "size_bytes": Path(f["file"]).stat().st_size,
                "method": f["method"],
                **_measure(name, Path(f["file"]), work, opts, threads, say),
            }
        rows["eager"]["shipped_as"] = "state_dict and spec saved with torch.save (loads with weights_only=True)"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for name, why in exports["skipped"].items():
        rows[name] = {"label": LABELS[name], "ok": False, "reason": why}
    rows = {name: rows[name] for name in LABELS if name in rows}
    ratios = {
        "onnx_latency_vs_eager": _ratio(rows, lambda r: r["latency_ms"]["p50_ms"]),
        "onnx_throughput_1024_vs_eager": _ratio(rows, lambda r: r["throughput"]["1024"]["images_per_s"]),
    }
    result: dict[str, Any] = {
        "command": None,  # how the run was asked for; the CLI fills it in
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {**machine_info(), "load_average_before": list(load_before)},
        "versions": _versions(),
        "threads": threads,
        "options": asdict(opts),
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
        "targets": {
            k: {
                "target": f"{op} {v:.3g}",
                "value": ratios[k],
                "met": None if ratios[k] is None else (ratios[k] <= v if op == "<=" else ratios[k] >= v),
            }
            for k, (op, v) in TARGETS.items()
        },
    }
    result["machine"]["load_average_after"] = list(os.getloadavg())
    if opts.plot != "":
        from cnnx.bench.report import plot

        result["plot"] = str(plot(result, Path(opts.plot) if opts.plot else src.path.parent / "bench.png"))
    else:
        result["plot"] = None
    result["wall_seconds"] = time.perf_counter() - t_start
    return result
