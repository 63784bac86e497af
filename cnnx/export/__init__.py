"""Export: checkpoint -> deployable files, each proven equal to the checkpoint before it is kept.

One core function, ``export_checkpoint`` (asked with ``ExportOptions``), drives every
format through the same steps: export into a staging folder, load the file back as a
consumer would, run the parity gate, record the result in the file's own spec. Only
when every requested format has passed are the files (and ``parity.json``, merged per
format with what the folder's earlier record still holds: ``cnnx.export.record``)
moved into the destination; a failed gate leaves nothing behind.

Each format is a module with the same shape (``SUFFIX``, ``METHODS``,
``export(model, spec, path, **options) -> Path``, ``load(path, threads)``),
dispatched from ``FORMATS``.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from cnnx.core.contract import PARITY_FILE
from cnnx.core.errors import Attempt, ConfigError, ModelFileError, ParityError
from cnnx.core.fileio import folder_problem
from cnnx.core.spec import Extra
from cnnx.export import parity, parity_data, record, selfcheck
from cnnx.export.fold import BLOCK, fold_batchnorm, pad_channels
from cnnx.export.formats import FORMATS, NOT_MADE, Loaded, files_of, missing, named_by, onnx_fp32
from cnnx.export.options import CHOICES, ON_REQUEST, ExportOptions
from cnnx.export.source import Source, load_source
from cnnx.train.checkpoint import file_sha256
from cnnx.train.runner import TorchRunner

LATENCY_BATCHES = (1, 64)  # batch sizes export times every format at


def _destination(out: str | None, source: Path) -> tuple[Path, str]:
    """(folder, file stem): ``--out model.onnx`` names the files model.*, ``--out DIR`` holds them."""
    if out is None:
        return source.parent, source.stem
    path = Path(out)
    named = named_by(path.name)
    if named is not None and named[1] and not path.is_dir():
        return path.parent, named[1]
    return path, source.stem


def shipped_files(name: str, path: Path) -> list[Path]:
    """What format ``name`` ships for its main file ``path`` (what its size counts): its files less the
    companions that only check it (``NOT_SHIPPED``: ExecuTorch's bundled program holds a copy of the program)."""
    checks = getattr(FORMATS[name], "NOT_SHIPPED", ())
    return [f for f in files_of(name, path) if not f.name.endswith(tuple(checks))]


def _methods(fmt: ModuleType, exporter: str) -> tuple[str, ...]:
    # a forced --exporter applies to the formats that have such a method (the fp32 ONNX file)
    return (exporter,) if exporter in fmt.METHODS else fmt.METHODS


@dataclass
class Exported:
    """One format's file that passed its gate, still in the staging folder."""

    path: Path
    loaded: Loaded  # the file loaded back, as a consumer loads it
    candidate: parity.Candidate  # its outputs on the parity data, and its size as checked
    method: str  # the way it was made, one of the format's METHODS
    attempts: list[Attempt]  # the methods rejected before this one
    export_seconds: float  # wall time of the format's export call
    parity: dict[str, Any]  # the gate's summary


@dataclass
class _Job:
    """What the formats of one export share."""

    src: Source
    # src.model with its BatchNorms folded and channels padded (cnnx.export.fold), and the spec's
    # extras that say so ({Extra.FOLDED: n, Extra.PADDED: m}, the non-zero ones)
    folded: tuple[nn.Module, dict[str, int]]
    unpadded: nn.Module | None  # the folded module before padding, when padding changed it (see _source_onnx)
    data: parity_data.ParityData
    reference: parity.Outputs  # the checkpoint's own outputs on ``data``
    opts: ExportOptions
    threads: int  # torch and onnxruntime threads during parity
    staging: Path  # where files are made and checked, in the destination folder
    stem: str  # file name without suffix
    say: Callable[[str], None]
    check_images: tuple[Any, Any]  # the self-check: (n, C, H, W) uint8 pixels, the checkpoint's (n, K) logits
    done: dict[str, Exported] = field(default_factory=dict)  # formats that passed, in the order made

    def path(self, name: str) -> Path:
        """Where format ``name`` is made and checked."""
        return self.staging / (self.stem + FORMATS[name].SUFFIX)


def _make(job: _Job, name: str, method: str) -> tuple[Loaded, parity.Candidate, float]:
    """Make ``name`` by ``method`` in the staging folder and load it back as a consumer would:
    (the loaded file, what it computes on the parity data, export seconds)."""
    fmt, path = FORMATS[name], job.path(name)
    model, spec = job.src.model, job.src.spec
    if getattr(fmt, "FOLD", False) and job.folded[1]:  # made from the folded module, and says so
        model, spec = job.folded[0], spec.replace(extra={**spec.extra, **job.folded[1]})
    t0 = time.perf_counter()
    fmt.export(
        model,
        spec,
        path,
        method=method,
        opset=job.opts.opset,
        built=_built(job, name),
        calibration=job.data.calibration,
    )
    export_s = time.perf_counter() - t0
    loaded = fmt.load(path, job.threads)
    signature = loaded.signature()
    expected = onnx_fp32.expected_signature(job.src.spec) if signature is not None else None
    outputs = parity.run_all(loaded.run, job.data)
    return loaded, parity.Candidate(name, outputs, signature, expected, path.stat().st_size), export_s


def _gate(job: _Job, loaded: Loaded, candidate: parity.Candidate, rejected: list[Attempt]) -> dict[str, Any]:
    """The parity gate on a made file; when it passes, its summary goes into the file's own spec."""
    gate, path = parity.GATES[candidate.name], job.path(candidate.name)
    base = job.done.get(gate.baseline)
    baseline = parity.Candidate(gate.baseline, base.candidate.outputs, size=base.path.stat().st_size) if base else None
    summary = parity.check(candidate, job.reference, job.data, baseline)
    check = None
    if getattr(FORMATS[candidate.name], "SELFCHECK", False):  # the file carries images for `cnnx verify`
        check = selfcheck.made(candidate.name, loaded.run, job.check_images, job.src.spec)
    spec = loaded.spec()  # read back from the file: proves the metadata round trip
    provenance = {
        Extra.PARITY: parity.compact(summary, job.data.source),
        **({Extra.REJECTED: [{"method": a["method"], "error": a["error"]} for a in rejected]} if rejected else {}),
    }
    loaded.write_spec(spec.replace(extra={**spec.extra, **provenance}), check)
    if baseline is not None and baseline.size:  # the size gate holds for the file as shipped, summary included
        summary = parity.check_size(candidate.name, path.stat().st_size, baseline.size, summary)
    return summary


def _attempt(method: str, exc: ModelFileError | ParityError) -> Attempt:
    summary = exc.summary if isinstance(exc, ParityError) and exc.summary else None
    return {
        "method": method,
        "error": exc.message,
        "kind": type(exc).__name__,
        **({"parity": summary} if summary else {}),
    }


def _export_one(job: _Job, name: str) -> Exported:
    """Export one format, trying its methods in order until one passes the gate; raise if none does."""
    attempts: list[Attempt] = []
    for method in _methods(FORMATS[name], job.opts.exporter):
        t0 = time.perf_counter()
        try:
            loaded, candidate, export_s = _make(job, name, method)
            summary = _gate(job, loaded, candidate, attempts)
        except (ModelFileError, ParityError) as exc:
            attempts.append(_attempt(method, exc))
            job.say(f"{name}: {method} rejected: {exc.message}")
            for file in files_of(name, job.path(name)):
                file.unlink(missing_ok=True)
            continue
        job.say(f"{name}: {method} export passed parity ({time.perf_counter() - t0:.1f} s)")
        return Exported(job.path(name), loaded, candidate, method, attempts, export_s, summary)
    # a gate that failed is a parity failure (exit 3); exporters that all crashed are a model-file problem
    why = f"no {name} export passed: " + " | ".join(f"{a['method']}: {a['error']}" for a in attempts)
    if any(a["kind"] == "ParityError" for a in attempts):
        raise ParityError(why, parity.GATES[name].hint, attempts=attempts)
    raise ModelFileError(why, parity.GATES[name].hint, attempts=attempts)


def _optional(job: _Job, name: str) -> bool:
    """Does a failure of ``name`` leave it out (reason in "skipped") instead of failing the export?
    int8 when asked as optional (cnnx bench), and under --format all or for cnnx bench the other formats
    gated on decisions (fp16): a model whose logits nearly tie (an untrained one) can miss 99.9%."""
    bench_or_all = job.opts.format == "all" or job.opts.int8_optional
    lossy = bench_or_all and name in CHOICES["all"] and parity.GATES[name].atol is None
    return (name in ON_REQUEST and job.opts.int8_optional) or lossy


def _export_all(job: _Job) -> dict[str, str]:
    """Every requested format into ``job.done``; returns the formats left out (tools missing, an optional
    format that missed its gate, and under --format all the formats cnnx does not make), with why."""
    skipped: dict[str, str] = {}
    for name in job.opts.names:
        why = missing(name)  # only under --format all: a format asked for by name is checked in ExportOptions
        if why:
            skipped[name] = why
            job.say(f"{name}: left out ({why})")
            continue
        try:
            job.done[name] = _export_one(job, name)
        except (ModelFileError, ParityError) as exc:
            if _optional(job, name):
                skipped[name] = exc.message
                job.say(f"{name}: left out ({exc.message})")
                continue
            # what --json prints on failure: the numbers of every attempt, nothing written
            report = {
                "passed": False,
                "failed_format": name,
                "error": str(exc),
                "attempts": exc.attempts,
                "images": job.data.source,
                "source": {"path": str(job.src.path), "kind": job.src.kind, "sha256": job.src.sha256},
                "passed_formats": {k: v.parity for k, v in job.done.items()},
            }
            raise type(exc)(exc.message, exc.hint, attempts=exc.attempts, report=report) from None
    if job.opts.format == "all":  # every format users ship to is accounted for, made or not
        for name, why in NOT_MADE.items():
            skipped[name] = why
            job.say(f"{name}: left out ({why})")
    return skipped


def _latencies(job: _Job) -> dict[str, dict[str, float]]:
    """Median ms per call at batch 1 (one image, the edge case) and 64, same threads for every runner."""
    runs = {"torch": TorchRunner(job.src.model).run, **{k: v.loaded.run for k, v in job.done.items()}}
    x = job.data.test_x
    return {name: {str(b): parity.latency_ms(run, x[:b]) for b in LATENCY_BATCHES} for name, run in runs.items()}


def _inputs(source: Path, opts: ExportOptions, say: Callable[[str], None]) -> tuple[Source, parity_data.ParityData]:
    """The model and spec to export, and the images it is checked on."""
    src = load_source(Path(source), opts.arch, opts.mean, opts.std, opts.classes)
    say(f"loaded {src.path} ({src.kind}, {src.spec.arch}, {src.spec.num_classes} classes)")
    data = parity_data.load_images(src.spec, Path(opts.data_dir) if opts.data_dir else None, src.train_config)
    n = data.source["images"]
    say(
        f"parity images: {n} {data.source['dataset']} test image{'s' * (n != 1)} from {data.source['folder']}"
        + (" (the sample shipped with cnnx; give --data-dir for the full test set)" if data.source["sample"] else "")
    )
    return src, data


def _reference(src: Source, data: parity_data.ParityData) -> tuple[parity.Outputs, float]:
    """The checkpoint's outputs on the parity data, and its accuracy on the test images (fraction)."""
    reference = parity.run_all(TorchRunner(src.model).run, data)
    accuracy = float((reference.real.argmax(1) == data.test_y).mean())
    if src.spec.test_accuracy is None and not data.source["sample"]:
        src.spec = src.spec.replace(test_accuracy=accuracy)  # a bare state_dict: measured here
    return reference, accuracy


@contextmanager
def _staging(folder: Path) -> Iterator[Path]:
    """A temporary folder inside ``folder`` (created if needed), removed afterwards with ``folder`` if
    this export created it and left it empty. A folder that cannot take files is a ConfigError."""
    why = folder_problem(folder)
    if why:
        raise ConfigError(f"cannot write the export folder {folder}: {why}", "pick another --out")
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".cnnx-export-", dir=folder))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def export_checkpoint(
    source: Path, opts: ExportOptions, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Export ``source`` in every requested format, gate each on parity, return the report (parity.json)."""
    say = progress or (lambda _msg: None)
    t_start = time.perf_counter()
    src, data = _inputs(source, opts, say)
    folder, stem = _destination(opts.out, src.path)
    with _staging(folder) as staging, parity.torch_threads(opts.threads) as threads:
        reference, ref_accuracy = _reference(src, data)
        check_images = selfcheck.bundle(TorchRunner(src.model).run, data, src.spec)
        # only the formats made from the folded module (FOLD) need it; the others never see the copy
        wanted = any(getattr(FORMATS[n], "FOLD", False) for n in opts.names)
        folded, unpadded = _folded(src.model, say, opts.pad_channels) if wanted else ((src.model, {}), None)
        job = _Job(
            src,
            folded,
            unpadded,
            data,
            reference,
            opts,
            threads,
            staging,
            stem,
            say,
            check_images,
        )
        skipped = _export_all(job)
        report = _report(job, _latencies(job), ref_accuracy, folder)
        report = record.merge({**report, "skipped": skipped}, folder)
        report["wall_seconds"] = time.perf_counter() - t_start
        record.write(report, staging / PARITY_FILE)
        for item in [*(f.name for k, v in job.done.items() for f in files_of(k, v.path)), PARITY_FILE]:
            os.replace(staging / item, folder / item)
    return report


def _built(job: _Job, name: str) -> dict[str, Path]:
    """The files format ``name`` may be made from (int8: the fp32 file). For a format that runs plain
    NCHW kernels (``UNPADDED``: .ort keeps only layout-independent optimisations, OpenVINO lays
    channels out itself), when the fp32 file was padded, "onnx" is an unpadded fp32 file instead,
    made once in the staging folder (which goes with it). Padded, those ran 1.2-1.4x slower (.ort)
    and at 0.87x the throughput (OpenVINO) on an AVX-512 Xeon."""
    built = {k: v.path for k, v in job.done.items()}
    if getattr(FORMATS[name], "UNPADDED", False) and job.unpadded is not None and "onnx" in job.done:
        plain = job.staging / f"{job.stem}.unpadded{onnx_fp32.SUFFIX}"
        if not plain.is_file():
            extra = {k: v for k, v in job.folded[1].items() if k != Extra.PADDED}
            spec = job.src.spec.replace(extra={**job.src.spec.extra, **extra})
            onnx_fp32.export(job.unpadded, spec, plain, method=job.done["onnx"].method, opset=job.opts.opset)
        built["onnx"] = plain
    return built


def _folded(
    model: nn.Module, say: Callable[[str], None], pad: bool = True
) -> tuple[tuple[nn.Module, dict[str, int]], nn.Module | None]:
    """((a copy of ``model`` as the ONNX family is made from it (cnnx.export.fold), the extras saying
    how), the same before its channels were padded, or None when none were)."""
    folded, n_folded = fold_batchnorm(model)
    unpadded = copy.deepcopy(folded)
    n_padded = pad_channels(folded) if pad else 0
    if n_folded:
        say(f"folded {n_folded} BatchNorm layer{'s' if n_folded > 1 else ''} into the convolution before each")
    if n_padded:
        say(
            f"padded {n_padded} convolution{'s' if n_padded > 1 else ''} with zero filters to a multiple of "
            f"{BLOCK} channels (onnxruntime's blocked kernels)"
        )
    made = {Extra.FOLDED: n_folded, Extra.PADDED: n_padded}
    return (folded, {k: v for k, v in made.items() if v}), unpadded if n_padded else None


def _honesty(job: _Job) -> dict[str, Any]:
    """The checkpoint's calibration and refusal on the parity test images (the numbers, not the bins)."""
    from cnnx.core.calibration import summary

    found = summary(job.reference.real, job.data.test_y, job.src.spec)
    return {k: v for k, v in found.items() if k != "reliability"}


def _report(job: _Job, latency: dict[str, dict[str, float]], ref_accuracy: float, folder: Path) -> dict[str, Any]:
    src = job.src
    formats = {
        name: {
            "file": str(folder / d.path.name),
            "size_bytes": sum(f.stat().st_size for f in shipped_files(name, d.path)),  # .xml + .bin for OpenVINO
            "sha256": file_sha256(d.path),
            "method": d.method,
            "rejected": d.attempts,
            "export_seconds": round(d.export_seconds, 3),
            "latency_ms": latency[name],
            **d.parity,
        }
        for name, d in job.done.items()
    }
    return {
        "passed": True,
        "source": {"path": str(src.path), "kind": src.kind, "sha256": src.sha256, **src.info},
        "spec": src.spec.to_dict(),
        "images": job.data.source,
        "threads": job.threads,
        "reference": {"accuracy": ref_accuracy, "latency_ms": latency["torch"], "honesty": _honesty(job)},
        "formats": formats,
        "options": asdict(job.opts),
        "out_dir": str(folder),
        "parity_json": str(folder / PARITY_FILE),
    }
