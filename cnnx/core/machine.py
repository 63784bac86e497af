"""This machine as cnnx sees it: how many cores to use, what a timing needs beside it, and the timers.

Stdlib at import time (numpy loads inside ``timed``): ``cnnx.bench.worker`` imports this in
processes that must hold nothing but the format they measure.
"""

from __future__ import annotations

import functools
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def usable_cores() -> int:
    """CPUs this process may run on (hyper-threads each counted)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads counted once); at least 1.

    The default thread count of every model cnnx runs (onnxruntime and torch alike).
    """
    try:
        cpus = tuple(sorted(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, (os.cpu_count() or 2) // 2)
    return _cores_of(cpus)


@functools.lru_cache(maxsize=8)
def _cores_of(cpus: tuple[int, ...]) -> int:
    # the topology files cost a third of a millisecond to read: once per affinity set (a server asks per request)
    cores = set()
    for cpu in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add((topo / "physical_package_id").read_text().strip() + ":" + (topo / "core_id").read_text().strip())
        except OSError:
            return max(1, len(cpus))  # no topology (some containers, some ARM kernels): count CPUs
    return max(1, len(cores))


def shared_threads() -> int:
    """Threads for each of two runtimes that run in one process (export's parity gate: torch and
    onnxruntime): half the cores, 1 to 4. An OpenMP pool whose threads share a core with another
    pool stalls at every barrier; one thread runs these small models nearly as fast."""
    return max(1, min(4, usable_cores() // 2))


CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")  # what bench JSON records


def machine_info() -> dict[str, Any]:
    """CPU model and the vector features timings depend on, cores, OS and Python: what a timing needs
    beside it to mean something (one Xeon model name covers CPUs with and without bf16)."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), None)
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    return {
        "cpu": cpu or platform.processor() or "unknown",
        "cpu_features": [f for f in CPU_FEATURES if f in flags],  # empty where /proc/cpuinfo is not there
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def timed(
    run: Callable[[Any], Any],
    x: Any,
    budget_s: float = 1.0,
    min_runs: int = 5,
    max_runs: int = 100_000,
    warmup: int = 3,
) -> dict[str, float]:
    """Wall time of one ``run(x)`` call in milliseconds: p50, p90, p99, mean, and how many calls were timed.

    ``warmup`` untimed calls first: TorchScript's profiling executor specialises its graph and
    onnxruntime picks kernels during the first calls, which would otherwise be charged to
    inference. Then calls repeat until ``budget_s`` has passed and at least ``min_runs`` were
    timed (at most ``max_runs``).
    """
    import numpy as np

    for _ in range(warmup):
        run(x)
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() < deadline):
        t0 = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - t0)
    ms = 1000 * np.asarray(times)
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "runs": len(times),
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process's own program so far, in MiB.

    Linux: VmHWM, the high-water mark of the address space exec made. Not ru_maxrss: the kernel
    carries the parent's peak over into the child's at exec, so every child of a bench that holds
    torch and the test set would report the bench's own 1 GB.
    """
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))  # kB
    except (OSError, StopIteration):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere
