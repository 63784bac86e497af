"""One format of ``cnnx bench``, measured in a fresh process of its own.

``cnnx bench`` runs this module once per format and mode::

    python -m cnnx.bench.worker measure JOB.json   # load time, peak RSS, accuracy, latency, throughput
    python -m cnnx.bench.worker cold JOB.json      # classify one PNG, whole process (torch formats)
    python -m cnnx.bench.worker spawn CMD ...      # time CMD from start to exit, its peak RSS

An ONNX file must be measured in a process that holds onnxruntime and numpy only, as on
the device, and eager and TorchScript in processes that hold torch and nothing of
onnxruntime: ``cnnx``, ``cnnx.bench`` and ``cnnx.core`` import nothing heavy, so this
module loads only what its format needs. Each process imports only what its
format needs, so one format's thread pools, allocator and imports never weigh on another's
numbers. Stdlib at the top; numpy and the format's runtime load inside the functions.

The job is a JSON object: ``format`` (eager, torchscript, onnx, onnx-int8, onnx-fp16, ort, openvino,
executorch, tflite, tflite-int8), ``file``, ``threads``, ``seconds`` (timing budget per batch size), ``batches``
(throughput batch sizes), ``batch_file`` (.npy, (B, C, H, W) float32 normalised, B = the largest batch),
``test_x``/``test_y`` (.npy test images and labels) for ``measure``; ``image`` (a PNG) for ``cold``.
The result is one JSON object on stdout.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnx.core.machine import peak_rss_mb, timed  # stdlib at import: the spawn mode stays a ~10 MB parent

Run = Callable[[Any], Any]  # (N, C, H, W) float32 normalised -> (N, K) float32 logits
EVAL_BATCH = 500  # images per call when measuring accuracy


def spawn(cmd: list[str]) -> dict[str, Any]:
    """Run ``cmd`` to its end: wall seconds from start to exit, its peak RSS (MiB), exit code, stdout.

    The bench starts its cold starts through this small stdlib-only process: a child inherits
    its parent's ru_maxrss (see ``peak_rss_mb``), and this parent's is ~10 MB, below any real
    program's peak; the bench's own is over 1 GB.
    """
    import subprocess

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)  # stderr: the bench's, for error messages
    out = proc.stdout.read() if proc.stdout else b""
    if hasattr(os, "wait4"):  # this child's own rusage
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        peak = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)
    else:
        proc.wait()
        wall, peak = time.perf_counter() - t0, float("nan")
    return {"seconds": wall, "peak_rss_mb": peak, "returncode": proc.returncode, "stdout": out.decode(errors="replace")}


# ---------------------------------------------------------------- loading, one function per format
# Each returns (run, spec as a dict or None); it is called after its imports, so its wall time is
# the model/session construction alone.


def _load_eager(path: str, threads: int) -> tuple[Run, dict[str, Any]]:
    """What shipping eager PyTorch means: the model's code (cnnx installed) plus a weights file."""
    import torch

    from cnnx.train.models import build_model
    from cnnx.train.runner import TorchRunner

    torch.set_num_threads(threads)
    saved = torch.load(path, map_location="cpu", weights_only=True)  # {"model": state_dict, "spec": dict}
    spec = saved["spec"]
    model = build_model(spec["arch"], len(spec["classes"]), tuple(spec["input_shape"]))
    model.load_state_dict(saved["model"])
    return TorchRunner(model).run, spec


def _load_torchscript(path: str, threads: int) -> tuple[Run, dict[str, Any]]:
    import torch

    from cnnx.core.contract import TORCHSCRIPT_SPEC_FILE
    from cnnx.train.runner import TorchRunner, load_torchscript

    torch.set_num_threads(threads)
    module, spec = load_torchscript(path, TORCHSCRIPT_SPEC_FILE)  # quietly: the notice is not the bench's
    return TorchRunner(module).run, json.loads(spec)


def _load_onnx(path: str, threads: int) -> tuple[Run, None]:
    from cnnx.core.onnxio import open_session  # stdlib until called: this process holds onnxruntime only

    # the edge runtime's own session: the numbers are what `cnnx infer` gets
    session = open_session(path, threads)
    names = [session.get_outputs()[0].name]
    feed = session.get_inputs()[0].name

    def run(x: Any) -> Any:
        return session.run(names, {feed: x})[0]

    return run, None


def _load_openvino(path: str, threads: int) -> tuple[Run, None]:
    from cnnx.core.openvinoio import open_openvino  # stdlib until called: this process holds openvino only

    _, run = open_openvino(path, threads)  # the edge runtime's own settings
    return run, None


def _load_executorch(path: str, threads: int) -> tuple[Run, dict[str, Any]]:
    # ExecuTorch's Python runtime (it takes torch tensors, so torch is part of this row's cost)
    from cnnx.export.formats.executorch_pte import load

    loaded = load(Path(path), threads)
    return loaded.run, loaded.spec().to_dict()


def _load_tflite(path: str, threads: int) -> tuple[Run, None]:
    from cnnx.core.tfliteio import open_tflite  # stdlib until called: this process holds LiteRT only

    _, run = open_tflite(Path(path), threads)  # the edge runtime's own settings
    return run, None


_IMPORTS: dict[str, tuple[str, ...]] = {
    "eager": ("torch", "cnnx.train.models", "cnnx.train.runner"),
    "torchscript": ("torch", "cnnx.train.runner"),
    "onnx": ("onnxruntime",),
    "onnx-int8": ("onnxruntime",),
    "onnx-fp16": ("onnxruntime",),
    "ort": ("onnxruntime",),
    "openvino": ("openvino",),
    "executorch": ("torch", "executorch.runtime"),
    "tflite": ("ai_edge_litert.interpreter",),
    "tflite-int8": ("ai_edge_litert.interpreter",),
}
_LOADERS: dict[str, Callable[[str, int], tuple[Run, Any]]] = {
    "eager": _load_eager,
    "torchscript": _load_torchscript,
    "onnx": _load_onnx,
    "onnx-int8": _load_onnx,
    "onnx-fp16": _load_onnx,
    "ort": _load_onnx,
    "openvino": _load_openvino,
    "executorch": _load_executorch,
    "tflite": _load_tflite,
    "tflite-int8": _load_tflite,
}


def _open(job: dict[str, Any]) -> tuple[Run, Any, float, float]:
    """(run, spec, import seconds, load seconds) for the job's format."""
    import importlib

    t0 = time.perf_counter()
    for name in ("numpy", *_IMPORTS[job["format"]]):
        importlib.import_module(name)
    t1 = time.perf_counter()
    run, spec = _LOADERS[job["format"]](job["file"], job["threads"])
    return run, spec, t1 - t0, time.perf_counter() - t1


def measure(job: dict[str, Any]) -> dict[str, Any]:
    """Load time, peak memory, accuracy, batch-1 latency and throughput of one format."""
    import numpy as np

    run, _spec, import_s, load_s = _open(job)
    big = np.load(job["batch_file"])  # (B, C, H, W) float32, B = the largest throughput batch
    run(big[:1])
    run(big)
    # peak so far: imports, the model, and one call at the largest batch; read before the test
    # set is loaded, which is the benchmark's own baggage, not the format's
    peak = peak_rss_mb()
    x, y = np.load(job["test_x"]), np.load(job["test_y"])  # (N, C, H, W) float32, (N,) int64
    pred = np.concatenate([run(x[i : i + EVAL_BATCH]).argmax(1) for i in range(0, len(x), EVAL_BATCH)])
    latency = timed(run, x[:1], job["seconds"], min_runs=20)
    throughput = {}
    for b in job["batches"]:
        t = timed(run, big[:b], job["seconds"], min_runs=3, warmup=2)
        throughput[str(b)] = {"images_per_s": b / (t["p50_ms"] / 1000), **t}
    return {
        "import_s": import_s,
        "load_ms": 1000 * load_s,
        "peak_rss_mb": peak,
        "accuracy": float((pred == y).mean()),
        "images": len(y),
        "latency_ms": latency,
        "throughput": throughput,
    }


def cold(job: dict[str, Any]) -> str:
    """Classify one image as a minimal torch script would: decode with Pillow, normalise, run, name the class."""
    import numpy as np
    from PIL import Image

    from cnnx.core.contract import normalise

    run, spec, _, _ = _open(job)
    c, h, w = spec["input_shape"]
    with Image.open(job["image"]) as img:
        img = img.convert("L" if c == 1 else "RGB")
        img = img if img.size == (w, h) else img.resize((w, h), Image.Resampling.BILINEAR)
        px = np.asarray(img, dtype=np.uint8).reshape(1, h, w, c).transpose(0, 3, 1, 2)  # (1, C, H, W) uint8
    logits = run(normalise(px, spec["mean"], spec["std"]))  # (1, K)
    return spec["classes"][int(logits.argmax())]


def main(argv: list[str]) -> None:
    mode, *args = argv
    if mode == "spawn":
        print(json.dumps(spawn(args)))
        return
    with open(args[0]) as f:
        job = json.load(f)
    print(json.dumps(measure(job)) if mode == "measure" else cold(job))


if __name__ == "__main__":
    main(sys.argv[1:])
