"""Export figures: parity of every format on the full MNIST test set, int8 size/accuracy, fp32 vs int8 latency.

    python bench/export_parity.py --checkpoint artifacts/runs/mnist/best.pt --data-dir ../shared/data/mnist

1. ``cnnx export CKPT --format all --json`` in a subprocess, timed from process start (target: under 60 s);
2. ``cnnx export CKPT --format onnx --int8 --json`` likewise (int8 with its gate);
3. int8 weights per channel and per tensor side by side, same calibration images, against the fp32 file;
4. latency of torch (eager), fp32 ONNX and int8 ONNX at batch 1, 8 and 64, with 1 thread and with
   every core: median and 90th percentile of many calls after warm-up; with ``--vs FILE``, an ONNX
   file of the same model made otherwise (e.g. by an earlier cnnx) timed beside them.

Prints tables and writes bench/results/export_parity.json. Latency on a shared machine is noisy:
the load average before and after is recorded with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from cnnx.core.machine import machine_info, timed

RESULTS = Path(__file__).resolve().parent / "results"
BATCHES = (1, 8, 64)


def cli_export(checkpoint: str, out: Path, data_dir: str | None, *args: str) -> tuple[dict[str, Any], float]:
    cmd = [
        sys.executable,
        "-m",
        "cnnx",
        "export",
        checkpoint,
        "--out",
        str(out),
        "--json",
        *args,
        *(["--data-dir", data_dir] if data_dir else []),
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 3):  # 3: a gate failed, which is a result
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    return {"returncode": proc.returncode, "command": " ".join(cmd[1:]), **json.loads(proc.stdout)}, wall


def int8_methods(fp32: Path, data_dir: str | None, tmp: Path) -> dict[str, Any]:
    """Quantise the same fp32 file per channel and per tensor; gate numbers for each."""
    from cnnx.core.errors import ParityError
    from cnnx.core.spec import Extra
    from cnnx.export import parity
    from cnnx.export import parity_data as images
    from cnnx.export.formats import onnx_fp32 as onnx_format
    from cnnx.export.formats import onnx_int8 as quantize

    model = onnx_format.load(fp32, threads=1)
    spec = model.spec()  # minus the fp32 file's own parity record; these files carry none of theirs either
    spec = spec.replace(extra={k: v for k, v in spec.extra.items() if k not in Extra.CHECK})
    data = images.load_images(spec, Path(data_dir) if data_dir else None)
    base = parity.Candidate("onnx", parity.run_all(model.run, data), size=fp32.stat().st_size)
    rows = {}
    for method in quantize.METHODS:
        path = tmp / f"{method}.int8.onnx"
        quantize.export(None, spec, path, method=method, built={"onnx": fp32}, calibration=data.calibration)
        outputs = parity.run_all(onnx_format.load(path, threads=1).run, data)
        int8 = parity.Candidate("onnx-int8", outputs, size=path.stat().st_size)
        try:
            summary = parity.check(int8, base.outputs, data, baseline=base)
        except ParityError as exc:
            summary = {**exc.summary, "error": exc.message}
        rows[method] = {"size_bytes": path.stat().st_size, **summary}
    return rows


def latency(checkpoint: str, files: dict[str, Path], threads: list[int]) -> list[dict[str, Any]]:
    import torch

    from cnnx.export.formats import onnx_fp32 as onnx_format
    from cnnx.export.source import load_source
    from cnnx.train.runner import TorchRunner

    model = load_source(Path(checkpoint)).model
    rng = np.random.default_rng(0)
    rows = []
    for n in threads:
        torch.set_num_threads(n)
        runners = {
            "torch eager": TorchRunner(model).run,
            **{name: onnx_format.load(path, threads=n).run for name, path in files.items()},
        }
        for batch in BATCHES:
            x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
            for name, run in runners.items():
                # 5 warm-up calls, then at least 30 timed ones within 1 s
                rows.append(
                    {
                        "threads": n,
                        "batch": batch,
                        "runner": name,
                        **timed(run, x, budget_s=1.0, min_runs=30, max_runs=2000, warmup=5),
                    }
                )
    return rows


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True, help="a cnnx checkpoint (.pt) or run folder")
    ap.add_argument("--data-dir", help="MNIST folder (the four IDX files) [default: cnnx's lookup]")
    ap.add_argument("--out", type=Path, default=RESULTS / "export_parity.json")
    ap.add_argument("--vs", type=Path, help="an ONNX file of the same model to time beside the export's")
    args = ap.parse_args()
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="cnnx-bench-export-"))
    all_report, all_wall = cli_export(args.checkpoint, tmp / "all", args.data_dir, "--format", "all")
    int8_report, int8_wall = cli_export(args.checkpoint, tmp / "int8", args.data_dir, "--int8")
    fp32 = Path(all_report["formats"]["onnx"]["file"])
    methods = int8_methods(fp32, args.data_dir, tmp)
    files = {"onnx fp32": fp32}
    if int8_report.get("passed"):
        files["onnx int8"] = Path(int8_report["formats"]["onnx-int8"]["file"])
    else:  # the gate failed, so the command wrote nothing: time the per-channel file anyway, labelled so
        files["onnx int8 (failed gate)"] = tmp / "per-channel.int8.onnx"
    if args.vs:
        files[f"vs {args.vs.name}"] = args.vs
    lat = latency(args.checkpoint, files, sorted({1, os.cpu_count() or 1}))
    result = {
        "machine": machine_info(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "checkpoint": args.checkpoint,
        "vs": str(args.vs) if args.vs else None,
        "format_all": {"wall_seconds": all_wall, "report": all_report},
        "int8": {"wall_seconds": int8_wall, "report": int8_report},
        "int8_methods": methods,
        "latency": lat,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))

    img = all_report["images"]
    print(
        f"{machine_info()['cpu']}, {os.cpu_count()} cores; load average {load_before[0]:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after"
    )
    print(
        f"parity on {img['images']} {img['dataset']} test images; reference accuracy "
        f"{100 * all_report['reference']['accuracy']:.2f}%\n"
    )
    rows = [["format", "size KB", "made by", "max|d| real", "max|d| random", "top-1 agree", "accuracy", "gate"]]
    formats = {**all_report["formats"], **{k: v for k, v in int8_report.get("formats", {}).items() if k != "onnx"}}
    for name, f in formats.items():
        rows.append(
            [
                name,
                f"{f['size_bytes'] / 1024:.1f}",
                f["method"],
                f"{f['real']['max_abs_diff']:.1e}",
                f"{f['random']['max_abs_diff']:.1e}",
                f"{100 * f['top1_agreement']:.2f}%",
                f"{100 * f['accuracy']:.2f}%",
                "pass",
            ]
        )
    print(table(rows))
    print(
        f"\ncnnx export --format all: {all_wall:.1f} s wall (process start to exit, parity included); "
        f"--int8: {int8_wall:.1f} s, {'passed' if int8_report.get('passed') else 'FAILED: ' + int8_report['error']}\n"
    )
    print(
        "int8 weights per channel and per tensor, same calibration (sizes before the int8 file's own parity "
        "record is added, ~0.5 KB)"
    )
    rows = [["int8 weights", "size KB", "size vs fp32", "top-1 agree vs fp32", "accuracy", "drop pp", "gate"]]
    for method, r in methods.items():
        rows.append(
            [
                method,
                f"{r['size_bytes'] / 1024:.1f}",
                f"{100 * r['size_ratio']:.1f}%",
                f"{100 * r['top1_agreement']:.2f}%",
                f"{100 * r['accuracy']:.2f}%",
                f"{r['accuracy_drop_pp']:+.2f}",
                "pass" if r["passed"] else "FAIL: " + r["error"].split(": ", 1)[1],
            ]
        )
    print(table(rows))
    rows = [["threads", "batch", *files.keys(), "torch eager"]]
    for n in sorted({r["threads"] for r in lat}):
        for b in BATCHES:
            cell = {r["runner"]: r for r in lat if r["threads"] == n and r["batch"] == b}
            rows.append(
                [
                    str(n),
                    str(b),
                    *[f"{cell[k]['p50_ms']:.3f} (p90 {cell[k]['p90_ms']:.3f})" for k in [*files, "torch eager"]],
                ]
            )
    print("\nlatency, median ms per call (p90)\n" + table(rows))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
