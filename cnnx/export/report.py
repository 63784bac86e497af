"""The export report as text: one parity row per format, then latency."""

from __future__ import annotations

import math
from typing import Any

from cnnx.core.calibration import describe


def table(rows: list[list[str]]) -> str:
    """Left-aligned columns, two spaces apart; the first row is the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in rows)


def _size(n: int) -> str:
    return f"{n / 1024:.1f} KB" if n < 2**20 else f"{n / 2**20:.2f} MB"


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _gate(tol: dict[str, Any]) -> str:
    """A format's tolerances as the table shows them."""
    gate = [f"|d|<={tol['atol']:g}"] if "atol" in tol else []
    gate.append(f"agree>={_pct(tol['min_agreement'])} vs {tol['baseline']}")
    if "max_accuracy_drop" in tol:
        gate.append(f"drop<={100 * tol['max_accuracy_drop']:g}pp")
    if "max_size_ratio" in tol:
        gate.append(f"size<={100 * tol['max_size_ratio']:.0f}%")
    return ", ".join(gate)


def _parity_table(report: dict[str, Any]) -> str:
    """One row per format: file, size, how it was made, its differences, agreement, accuracy, gate, result."""
    header = ["format", "file", "size", "made by", "max|d| real", "max|d| random", "rel", "top-1 agree"]
    rows = [[*header, "accuracy", "gate", "result"]]
    kept = set(report.get("kept", []))
    for name, f in report["formats"].items():
        size = _size(f["size_bytes"])
        if name != "onnx" and "size_ratio" in f:
            size += f" ({100 * f['size_ratio']:.1f}%)"
        result = "pass" if f["passed"] else "FAIL"
        rows.append(
            [
                name,
                f["file"].rsplit("/", 1)[-1],
                size,
                f["method"],
                f"{f['real']['max_abs_diff']:.2e}",
                f"{f['random']['max_abs_diff']:.2e}",
                f"{f['real']['max_rel_diff']:.1e}",
                _pct(f["top1_agreement"]),
                _pct(f["accuracy"]),
                _gate(f["tolerance"]),
                f"{result} (earlier)" if name in kept else result,
            ]
        )
    return table(rows)


def _latency_table(report: dict[str, Any]) -> str:
    """Median ms per call of the reference and of the formats this export made (same threads, same run)."""
    ref = report["reference"]["latency_ms"]
    rows = [
        ["latency (median ms)", *[f"batch {b}" for b in ref]],
        ["torch (reference)", *[f"{v:.3f}" for v in ref.values()]],
    ]
    for name in report.get("written", report["formats"]):
        rows.append([name, *[f"{report['formats'][name]['latency_ms'][b]:.3f}" for b in ref]])
    return table(rows)


def thin_gates(report: dict[str, Any]) -> tuple[list[str], int]:
    """(the formats this export gated on top-1 agreement alone, that its test images are too few to back,
    the images that would). With none of N images disagreeing, up to 3/N may still disagree (95%, the
    rule of three), so a gate of agreement ``a`` needs N >= 3 / (1 - a): 3,000 images for fp16's 99.9%,
    1,500 for int8's 99.8%. The fp32 formats are gated on every logit of real and random inputs as well."""
    n = report["images"]["images"]
    kept = set(report.get("kept", []))
    need = {
        name: math.ceil(3 / (1 - f["tolerance"]["min_agreement"]) - 1e-9)
        for name, f in report["formats"].items()
        if name not in kept and "atol" not in f["tolerance"] and f["tolerance"]["min_agreement"] < 1
    }
    thin = [name for name, k in need.items() if n < k]
    return thin, max((need[name] for name in thin), default=0)


SLOWER = 1.1  # a reduced-precision file this many times its fp32 file's batch-64 latency, or more, is said to be slower


def slower_than_fp32(report: dict[str, Any]) -> list[tuple[str, str, float, float]]:
    """(format, its fp32 format, its ms, the fp32 ms) at batch 64, for each fp16 or int8 file this export
    timed at SLOWER times its fp32 file or more: on a CPU without fast fp16 or int8 kernels, or with a
    model this small, the smaller file is the slower one, and the latency table alone does not say so."""
    formats, out = report["formats"], []
    for name, f in formats.items():
        base = name.removesuffix("-int8").removesuffix("-fp16")
        if base == name or base not in formats or "64" not in f["latency_ms"]:
            continue
        ms, base_ms = f["latency_ms"]["64"], formats[base]["latency_ms"].get("64")
        if base_ms and ms >= SLOWER * base_ms:
            out.append((name, base, ms, base_ms))
    return out


def _agrees(name: str, report: dict[str, Any]) -> str:
    """e.g. "onnx-int8's top-1 agreement >= 99.80%"."""
    return f"{name}'s top-1 agreement >= {_pct(report['formats'][name]['tolerance']['min_agreement'])}"


def render(report: dict[str, Any]) -> str:
    """What ``cnnx export`` prints: the parity table, latency, where the files went, and the formats
    left out with why (tools not installed, an optional file that missed its gate, formats cnnx does not make)."""
    img = report["images"]
    where = "the sample shipped with cnnx" if img["sample"] else img["folder"]
    formats = report["formats"]
    written = [formats[n]["file"] for n in report.get("written", formats)]
    kept = [formats[n]["file"].rsplit("/", 1)[-1] for n in report.get("kept", [])]
    n, threads = img["images"], report["threads"]
    lines = [
        f"parity on {n} {img['dataset']} test image{'s' * (n != 1)} ({where}) and random inputs at batch "
        f"{', '.join(map(str, img['random_batches']))}; torch and onnxruntime on {threads} "
        f"thread{'s' * (threads != 1)}",
        f"reference: PyTorch, eval mode, accuracy {_pct(report['reference']['accuracy'])}",
        *describe(report["reference"].get("honesty")),
        "",
        _parity_table(report),
        "",
        _latency_table(report),
        "",
        f"wrote {', '.join(written)}",
    ]
    if kept:
        lines.append(f"kept {', '.join(kept)}: exported earlier from this checkpoint, unchanged (rows marked earlier)")
    lines += [f"left out {name}: {why}" for name, why in report.get("skipped", {}).items()]
    stale = report.get("stale") or []
    if stale:
        lines.append(
            f"warning: {', '.join(stale)} in the same folder no longer match{'es' * (len(stale) == 1)} "
            "this checkpoint (exported from another one, or changed since; cnnx verify still passes them, as it "
            "checks a file against itself): export them again, or delete them"
        )
    made_now = set(report.get("written", formats))  # a kept row's timing is from its own export
    for name, base, ms, base_ms in slower_than_fp32(report):
        if name in made_now:
            lines.append(
                f"note: {name} took {ms / base_ms:.1f}x the time of {base} at batch 64 here ({ms:.2f} vs "
                f"{base_ms:.2f} ms, {threads} thread{'s' * (threads != 1)}): it saves size, not time, on this CPU"
            )
    thin, needed = thin_gates(report)
    if thin:
        lines.append(
            f"warning: {' and '.join(_agrees(name, report) for name in thin)} rest{'s' * (len(thin) == 1)} on "
            f"{n} test image{'s' * (n != 1)}, too few to show {'them' if len(thin) > 1 else 'it'}: with none of "
            f"{n} disagreeing, up to {_pct(min(1.0, 3 / max(n, 1)))} may (95% bound); give --data-dir a test set "
            f"of {needed:,} images or more"
        )
    lines.append(f"report {report['parity_json']} ({report['wall_seconds']:.1f} s)")
    return "\n".join(lines)
