"""Export: checkpoint -> deployable files, each proven equal to the checkpoint before it is kept.

One core function, ``export_checkpoint``, drives every format through the same
steps: export into a staging folder, load the file back as a consumer would,
run the parity gate, record the result in the file's own spec. Only when every
requested format has passed are the files (and ``parity.json``) moved into the
destination; a failed gate leaves nothing behind.

Each format is a module with the same shape (``SUFFIX``, ``METHODS``,
``export(model, spec, path, **options) -> Path``, ``load(path, threads)``),
dispatched from ``FORMATS``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from cnnx.core.contract import PARITY_FILE
from cnnx.core.errors import ConfigError, ModelFileError, ParityError
from cnnx.core.fileio import atomic_write
from cnnx.export import parity, parity_data
from cnnx.export.formats import FORMATS, onnx_fp32
from cnnx.export.source import Source, load_source
from cnnx.train.checkpoint import file_sha256

# what --format NAME asks for; int8 is added by --int8 on top of onnx
CHOICES: dict[str, tuple[str, ...]] = {
    "onnx": ("onnx",),
    "torchscript": ("torchscript",),
    "all": ("onnx", "torchscript"),
}
EXPORTERS = ("auto", *onnx_fp32.METHODS)
LATENCY_BATCHES = (1, 64)


@dataclass
class ExportOptions:
    format: str = "onnx"  # onnx, torchscript or all (= onnx + torchscript)
    int8: bool = False  # also write a static-QDQ int8 ONNX file, with its own gate
    int8_optional: bool = False  # an int8 file that misses its gate is left out (reason in "skipped"), not an error
    out: str | None = None  # folder, or a file name whose stem names the files; None = beside the checkpoint
    opset: int = onnx_fp32.DEFAULT_OPSET  # ONNX opset of the fp32 file
    exporter: str = "auto"  # ONNX exporter: auto (dynamo, then legacy), dynamo or legacy
    arch: str | None = None  # architecture of a bare state_dict (cnnx checkpoints name their own)
    mean: tuple[float, ...] | None = None  # overrides the spec's per-channel mean
    std: tuple[float, ...] | None = None  # overrides the spec's per-channel std
    classes: list[str] | None = None  # overrides the spec's class names
    data_dir: str | None = None  # dataset folder for the parity images; None = $CNNX_DATA_DIR, else the sample
    threads: int = 0  # torch and onnxruntime threads during parity; 0 = half the cores, 1 to 4

    def __post_init__(self) -> None:
        if self.format not in CHOICES:
            raise ConfigError(f"--format must be one of {', '.join(CHOICES)}, got {self.format!r}")
        if self.int8 and "onnx" not in CHOICES[self.format]:
            raise ConfigError(
                f"--int8 quantises the ONNX export, but --format is {self.format}",
                "use --format onnx or all with --int8",
            )
        if not 13 <= self.opset <= 23:
            raise ConfigError(
                f"--opset must be between 13 and 23, got {self.opset}",
                f"the default, {onnx_fp32.DEFAULT_OPSET}, runs on onnxruntime 1.14 and later",
            )
        if self.exporter not in EXPORTERS:
            raise ConfigError(f"--exporter must be one of {', '.join(EXPORTERS)}, got {self.exporter!r}")
        if self.threads < 0:
            raise ConfigError(f"--threads must be 0 (automatic) or more, got {self.threads}")

    @property
    def names(self) -> list[str]:
        return [*CHOICES[self.format], *(["onnx-int8"] if self.int8 else [])]


def _destination(out: str | None, source: Path) -> tuple[Path, str]:
    """(folder, file stem): ``--out model.onnx`` names the files model.*, ``--out DIR`` holds them."""
    if out is None:
        return source.parent, source.stem
    path = Path(out)
    suffixes = {fmt.SUFFIX for fmt in FORMATS.values()}
    name = next((path.name[: -len(s)] for s in sorted(suffixes, key=len, reverse=True) if path.name.endswith(s)), None)
    if name and not path.is_dir():
        return path.parent, name
    return path, source.stem


def _methods(fmt: ModuleType, exporter: str) -> tuple[str, ...]:
    # a forced --exporter applies to the formats that have such a method (the fp32 ONNX file)
    return (exporter,) if exporter in fmt.METHODS else fmt.METHODS


def _export_one(
    name: str,
    src: Source,
    path: Path,
    data: parity_data.ParityData,
    reference: parity.Outputs,
    done: dict[str, dict[str, Any]],
    opts: ExportOptions,
    threads: int,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Export one format, trying its methods in order until one passes the gate; raise if none does."""
    fmt, gate = FORMATS[name], parity.GATES[name]
    attempts: list[dict[str, str]] = []
    for method in _methods(fmt, opts.exporter):
        t0 = time.perf_counter()
        try:
            fmt.export(
                src.model,
                src.spec,
                path,
                method=method,
                opset=opts.opset,
                built={k: v["path"] for k, v in done.items()},
                calibration=data.calibration,
            )
            export_s = time.perf_counter() - t0
            loaded = fmt.load(path, threads)
            outputs = parity.run_all(loaded.run, data)
            base = done.get(gate.baseline, {})
            summary = parity.check(
                name,
                outputs,
                reference,
                data,
                signature=loaded.signature(),
                expected=onnx_fp32.expected_signature(src.spec) if loaded.signature() is not None else None,
                baseline=base.get("outputs"),
                size=path.stat().st_size,
                baseline_size=base["path"].stat().st_size if base else None,
            )
            spec = loaded.spec()  # read back from the file: proves the metadata round trip
            rejected = [{"method": a["method"], "error": a["error"]} for a in attempts]
            spec = spec.replace(
                extra={
                    **spec.extra,
                    "parity": parity.compact(summary, data.source),
                    **({"rejected": rejected} if rejected else {}),
                }
            )
            loaded.write_spec(spec)
            if base:  # the size gate holds for the file as shipped, parity summary included
                try:
                    summary.update(parity.check_size(name, path.stat().st_size, base["path"].stat().st_size))
                except ParityError as exc:
                    exc.summary = {**summary, **exc.summary, "passed": False}  # type: ignore[attr-defined]
                    raise
        except (ModelFileError, ParityError) as exc:
            attempts.append(
                {
                    "method": method,
                    "error": exc.message,
                    "kind": type(exc).__name__,
                    **({"parity": exc.summary} if hasattr(exc, "summary") else {}),
                }
            )
            say(f"{name}: {method} rejected: {exc.message}")
            path.unlink(missing_ok=True)
            continue
        say(f"{name}: {method} export passed parity ({time.perf_counter() - t0:.1f} s)")
        return {
            "path": path,
            "loaded": loaded,
            "outputs": outputs,
            "method": method,
            "attempts": attempts,
            "export_seconds": export_s,
            "parity": summary,
        }
    # a gate that failed is a parity failure (exit 3); exporters that all crashed are a model-file problem
    cls = ParityError if any(a["kind"] == "ParityError" for a in attempts) else ModelFileError
    error = cls(f"no {name} export passed: " + " | ".join(f"{a['method']}: {a['error']}" for a in attempts), gate.hint)
    error.attempts = attempts  # type: ignore[attr-defined]
    raise error


def _latencies(runs: dict[str, parity.Runner], data: parity_data.ParityData) -> dict[str, dict[str, float]]:
    """Median ms per call at batch 1 (one image, the edge case) and 64, same threads for every runner."""
    return {
        name: {str(b): parity.latency_ms(run, data.test_x[:b]) for b in LATENCY_BATCHES} for name, run in runs.items()
    }


def export_checkpoint(
    source: Path, opts: ExportOptions, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Export ``source`` in every requested format, gate each on parity, return the report."""
    say = progress or (lambda _msg: None)
    t_start = time.perf_counter()
    src = load_source(Path(source), opts.arch, opts.mean, opts.std, opts.classes)
    say(f"loaded {src.path} ({src.kind}, {src.spec.arch}, {src.spec.num_classes} classes)")
    data = parity_data.load_images(src.spec, Path(opts.data_dir) if opts.data_dir else None, src.train_config)
    say(
        f"parity images: {data.source['images']} {data.source['dataset']} test images from {data.source['folder']}"
        + (" (the sample shipped with cnnx; give --data-dir for the full test set)" if data.source["sample"] else "")
    )
    folder, stem = _destination(opts.out, src.path)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".cnnx-export-", dir=folder))
    try:
        with parity.torch_threads(opts.threads) as threads:
            reference = parity.run_all(parity.torch_runner(src.model), data)
            ref_accuracy = float((reference.real.argmax(1) == data.test_y).mean())
            if src.spec.test_accuracy is None and not data.source["sample"]:
                src.spec = src.spec.replace(test_accuracy=ref_accuracy)  # a bare state_dict: measured here
            done: dict[str, dict[str, Any]] = {}
            skipped: dict[str, str] = {}
            for name in opts.names:
                path = staging / (stem + FORMATS[name].SUFFIX)
                try:
                    done[name] = _export_one(name, src, path, data, reference, done, opts, threads, say)
                except (ModelFileError, ParityError) as exc:
                    if name == "onnx-int8" and opts.int8_optional:
                        skipped[name] = exc.message
                        say(f"{name}: left out ({exc.message})")
                        continue
                    # what --json prints on failure: the numbers of every attempt, nothing written
                    exc.report = {
                        "passed": False,
                        "failed_format": name,
                        "error": str(exc),  # type: ignore
                        "attempts": getattr(exc, "attempts", []),
                        "images": data.source,
                        "source": {"path": str(src.path), "kind": src.kind, "sha256": src.sha256},
                        "passed_formats": {k: v["parity"] for k, v in done.items()},
                    }
                    raise
            runs = {"torch": parity.torch_runner(src.model), **{k: v["loaded"].run for k, v in done.items()}}
            latency = _latencies(runs, data)
        report = _report(src, data, done, latency, ref_accuracy, folder, threads, opts)
        report["skipped"] = skipped
        report["wall_seconds"] = time.perf_counter() - t_start
        parity_json = json.dumps(report, indent=2, default=str).encode()
        atomic_write(staging / PARITY_FILE, lambda f: f.write(parity_json))
        for item in [*(v["path"].name for v in done.values()), PARITY_FILE]:
            os.replace(staging / item, folder / item)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return report


def _report(
    src: Source,
    data: parity_data.ParityData,
    done: dict[str, dict[str, Any]],
    latency: dict[str, dict[str, float]],
    ref_accuracy: float,
    folder: Path,
    threads: int,
    opts: ExportOptions,
) -> dict[str, Any]:
    formats = {}
    for name, d in done.items():
        final = folder / d["path"].name
        formats[name] = {
            "file": str(final),
            "size_bytes": d["path"].stat().st_size,
            "sha256": file_sha256(d["path"]),
            "method": d["method"],
            "rejected": d["attempts"],
            "export_seconds": round(d["export_seconds"], 3),
            "latency_ms": latency[name],
            **d["parity"],
        }
    return {
        "passed": True,
        "source": {"path": str(src.path), "kind": src.kind, "sha256": src.sha256, **src.info},
        "spec": src.spec.to_dict(),
        "images": data.source,
        "threads": threads,
        "reference": {"accuracy": ref_accuracy, "latency_ms": latency["torch"]},
        "formats": formats,
        "options": asdict(opts),
        "out_dir": str(folder),
        "parity_json": str(folder / PARITY_FILE),
    }
