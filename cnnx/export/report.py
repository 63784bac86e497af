"""The export report as text: one parity row per format, then latency. Stdlib only."""

from __future__ import annotations

from typing import Any


def table(rows: list[list[str]]) -> str:
    """Left-aligned columns, two spaces apart; the first row is the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in rows)


def _size(n: int) -> str:
    return f"{n / 1024:.1f} KB" if n < 2**20 else f"{n / 2**20:.2f} MB"


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def render(report: dict[str, Any]) -> str:
    """What ``cnnx export`` prints: the parity table, latency, and where the files went."""
    img = report["images"]
    where = "the sample shipped with cnnx" if img["sample"] else img["folder"]
    lines = [
        f"parity on {img['images']} {img['dataset']} test images ({where}) and random inputs at batch "
        f"{', '.join(map(str, img['random_batches']))}; torch and onnxruntime on {report['threads']} threads",
        f"reference: PyTorch, eval mode, accuracy {_pct(report['reference']['accuracy'])}",
        "",
    ]
    rows = [
        [
            "format",
            "file",
            "size",
            "made by",
            "max|d| real",
            "max|d| random",
            "rel",
            "top-1 agree",
            "accuracy",
            "gate",
            "result",
        ]
    ]
    onnx_size = report["formats"].get("onnx", {}).get("size_bytes")
    for name, f in report["formats"].items():
        tol = f["tolerance"]
        gate = [f"|d|<={tol['atol']:g}"] if "atol" in tol else []
        gate.append(f"agree>={_pct(tol['min_agreement'])} vs {tol['baseline']}")
        if "max_accuracy_drop" in tol:
            gate.append(f"drop<={100 * tol['max_accuracy_drop']:g}pp")
        if "max_size_ratio" in tol:
            gate.append(f"size<={100 * tol['max_size_ratio']:.0f}%")
        size = _size(f["size_bytes"])
        if onnx_size and name != "onnx" and "size_ratio" in f:
            size += f" ({100 * f['size_ratio']:.1f}%)"
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
                ", ".join(gate),
                "pass" if f["passed"] else "FAIL",
            ]
        )
    lines.append(table(rows))
    batches = list(report["reference"]["latency_ms"])
    lat = [
        ["latency (median ms)", *[f"batch {b}" for b in batches]],
        ["torch (reference)", *[f"{report['reference']['latency_ms'][b]:.3f}" for b in batches]],
    ]
    lat += [[name, *[f"{f['latency_ms'][b]:.3f}" for b in batches]] for name, f in report["formats"].items()]
    lines += [
        "",
        table(lat),
        "",
        f"wrote {', '.join(f['file'] for f in report['formats'].values())}",
        f"report {report['parity_json']} ({report['wall_seconds']:.1f} s)",
    ]
    return "\n".join(lines)
