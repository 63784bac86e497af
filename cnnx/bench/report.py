"""``cnnx bench``'s result as a table (stdlib) and as a bar chart PNG (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnx.export.report import table

# one panel per metric: (title, unit, value of a format's row); formats are the bars
PANELS: list[tuple[str, str, Callable[[dict[str, Any]], float]]] = [
    ("latency, batch 1 (p50)", "us", lambda r: 1000 * r["latency_ms"]["p50_ms"]),
    ("throughput, batch 1024", "images/s", lambda r: r["throughput"]["1024"]["images_per_s"]),
    ("file size", "KB", lambda r: r["size_bytes"] / 1024),
    ("cold start, one image", "s", lambda r: r["cold_start"]["seconds"]),
]
WIDTH_IN, HEIGHT_IN = 14, 3.6  # 1400 x 360 pixels at plots.DPI


def _size(n: int) -> str:
    return f"{n / 1024:.1f} KB" if n < 2**20 else f"{n / 2**20:.2f} MB"


# the table's columns; b1 = batch 1, p50/p99 = percentiles of one call's wall time
COLUMNS = [
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


def _row(r: dict[str, Any]) -> list[str]:
    """One benchmarked format's cells, in ``COLUMNS`` order."""
    lat, tp = r["latency_ms"], r["throughput"]
    return [
        r["label"],
        _size(r["size_bytes"]),
        f"{100 * r['accuracy']:.2f}%",
        f"{1000 * lat['p50_ms']:.0f}",
        f"{1000 * lat['p99_ms']:.0f}",
        f"{tp['64']['images_per_s']:,.0f}",
        f"{tp['1024']['images_per_s']:,.0f}",
        f"{r['load_ms']:.1f}",
        f"{r['peak_rss_mb']:.0f}",
        f"{r['cold_start']['seconds']:.2f}",
    ]


def _target_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    for key, what in (
        ("onnx_latency_vs_eager", "ONNX Runtime fp32 batch-1 latency / eager"),
        ("onnx_throughput_1024_vs_eager", "ONNX Runtime fp32 batch-1024 throughput / eager"),
    ):
        t = result["targets"][key]
        if t["value"] is not None:
            lines.append(f"{what}: {t['value']:.2f}x (target {t['target']}: {'met' if t['met'] else 'NOT met'})")
    return lines


def render(result: dict[str, Any]) -> str:
    """What ``cnnx bench`` prints: one row per format, the target ratios, the setting they were measured in."""
    rows = [COLUMNS]
    notes = []
    for r in result["formats"].values():
        if r["ok"]:
            rows.append(_row(r))
        else:
            rows.append([r["label"], *["-"] * (len(COLUMNS) - 1)])
            notes.append(f"{r['label']}: not benchmarked: {r['reason']}")
    m, img = result["machine"], result["images"]
    where = "the sample shipped with cnnx" if img["sample"] else img["folder"]
    lines = [table(rows), "", *_target_lines(result), *notes]
    lines += [
        "",
        f"accuracy on {img['images']:,} {img['dataset']} test image{'s' * (img['images'] != 1)} ({where}); "
        f"every format on {result['threads']} thread(s), in a fresh process of its own",
        "peak MB: a process that loaded the model and ran one batch of 1,024; cold start: a new process "
        "classifying one PNG (ONNX: cnnx infer), median of " + str(result["options"]["cold_runs"]),
        f"{m['cpu']}, {m['cores']} cores; load average {m['load_average_before'][0]:.1f} before, "
        f"{m['load_average_after'][0]:.1f} after",
    ]
    if result.get("plot"):
        lines.append(f"chart {result['plot']} ({result['wall_seconds']:.0f} s)")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> Path:
    """One panel per metric of ``PANELS``, one horizontal bar per benchmarked format (1400x360 pixels)."""
    from cnnx.core.plots import figure, save_png

    rows = [r for r in result["formats"].values() if r["ok"]]
    labels = [r["label"] for r in rows]
    fig = figure(WIDTH_IN, HEIGHT_IN)
    axes = fig.subplots(1, len(PANELS), sharey=True)
    colours = [f"C{i}" for i in range(len(rows))]
    for ax, (title, unit, value) in zip(axes, PANELS, strict=False):
        values = [value(r) for r in rows]
        bars = ax.barh(range(len(rows)), values, color=colours)
        ax.bar_label(bars, labels=[f"{v:,.0f}" if v >= 100 else f"{v:.3g}" for v in values], padding=3, fontsize=8)
        ax.set_title(f"{title} ({unit})", fontsize=10)
        ax.set_xlim(0, 1.3 * max(values))  # room for the value labels
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=8)
    axes[0].set_yticks(range(len(rows)), labels, fontsize=9)
    axes[0].invert_yaxis()  # the first format on top, as in the table
    m = result["machine"]
    missing = [r["label"] for r in result["formats"].values() if not r["ok"]]
    fig.suptitle(
        f"{Path(result['source']['path']).name} ({result['source']['arch']}) on {m['cpu']}, "
        f"{result['threads']} thread(s)" + (f"; not shown: {', '.join(missing)}" if missing else ""),
        fontsize=10,
    )
    fig.subplots_adjust(left=0.115, right=0.99, bottom=0.12, top=0.8, wspace=0.12)
    return save_png(fig, path, "pick another --plot, or --no-plot")
